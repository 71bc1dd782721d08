"""Audio domain: log-mel encoders (CNN, Transformer) pretrained with BYOL/SimCLR on augmented views, masked frames
(TERA/Mockingjay) or time-shift prediction; the held-out-speaker evaluation protocol."""

from ssl_modal.audio.cnn import ConvAudioEncoder
from ssl_modal.audio.config import (
    AudioConfig,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    FrontendConfig,
    MaskedFramesConfig,
    TimeShiftConfig,
)
from ssl_modal.audio.export import encode_manifest, export_manifest
from ssl_modal.audio.frontend import LogMel, mfcc_mean_std, streaming_stats
from ssl_modal.audio.io import AudioError, AudioReader, load_segments, read_manifest, windows
from ssl_modal.audio.model import AudioEncoder, audio_collate, audio_model_config, build_audio_model, masked_mean
from ssl_modal.audio.objectives import MaskedFrames, TimeShift
from ssl_modal.audio.views import audio_views

__all__ = [
    "AudioConfig",
    "AudioEncoder",
    "ConvAudioEncoder",
    "audio_views",
    "AudioError",
    "AudioReader",
    "DataConfig",
    "EncoderConfig",
    "EvalConfig",
    "FrontendConfig",
    "LogMel",
    "MaskedFrames",
    "MaskedFramesConfig",
    "TimeShift",
    "TimeShiftConfig",
    "audio_collate",
    "audio_model_config",
    "build_audio_model",
    "encode_manifest",
    "export_manifest",
    "load_segments",
    "masked_mean",
    "mfcc_mean_std",
    "read_manifest",
    "streaming_stats",
    "windows",
]
