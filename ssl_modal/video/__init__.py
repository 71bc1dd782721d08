"""Video domain: decord/PyAV/frame-folder readers, a ResNet-style frame encoder, colorization-tracking and
frame-order (VCOP) objectives, label propagation and the DAVIS J&F evaluation."""

from ssl_modal.video.davis import contour_f, load_sequence, region_j, sequence_scores
from ssl_modal.video.io import VideoReadError, open_video, read_frames, read_mask, read_videos
from ssl_modal.video.model import build_video_model
from ssl_modal.video.propagate import propagate

__all__ = [
    "VideoReadError",
    "build_video_model",
    "contour_f",
    "load_sequence",
    "open_video",
    "propagate",
    "read_frames",
    "read_mask",
    "read_videos",
    "region_j",
    "sequence_scores",
]
