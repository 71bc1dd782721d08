"""Readers: decord and PyAV behind one interface, frame folders, masks, and every bad-input message."""

import numpy as np
import pytest
from PIL import Image

from ssl_modal.video.io import (
    DecordVideo,
    FrameFolder,
    PyAVVideo,
    VideoReadError,
    open_video,
    read_frames,
    read_mask,
    read_videos,
)
from tests.video.conftest import EDGE, SHARED_VIDEO, need, synthetic_frames, write_sequence


def brightness(frames):
    """The frame index encoded in the background (top-left corner is background)."""
    return np.round(frames[:, :8, :8].mean((1, 2, 3)) / 10).astype(int)


def test_decord_reads_every_frame_in_order(tiny_video):
    with open_video(tiny_video) as video:
        assert video.backend == "decord" and len(video) == 12 and video.fps == pytest.approx(24)
        frames = video.get_batch([0, 5, 11])
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert brightness(frames).tolist() == [0, 5, 11]


def test_stride_fps_sampling_and_resize_at_decode(tiny_video):
    with open_video(tiny_video, size=(24, 32)) as video:
        assert video.sample_indices(stride=4) == [0, 4, 8]
        assert video.sample_indices(fps=8) == [0, 3, 6, 9]
        assert video.sample_indices(stride=2, start=1, num_frames=3) == [1, 3, 5]
        frames = video.read_all(stride=4)
    assert frames.shape == (3, 24, 32, 3)
    assert brightness(frames).tolist() == [0, 4, 8]


def test_pyav_fallback_gives_the_same_frames(tiny_video):
    dec = DecordVideo(tiny_video).read_all()
    with PyAVVideo(tiny_video) as pyav:
        assert len(pyav) == 12
        frames = pyav.read_all()
    assert np.abs(frames.astype(int) - dec).mean() < 1.0
    assert PyAVVideo(tiny_video, size=(24, 32)).get_batch([2]).shape == (1, 24, 32, 3)


def test_frame_folder_same_interface(tmp_path):
    folder = write_sequence(tmp_path, "seq", synthetic_frames(), np.zeros((12, 48, 64), bool))
    with open_video(folder, size=(24, 32)) as video:
        assert isinstance(video, FrameFolder) and len(video) == 12
        assert brightness(video.get_batch([1, 7])).tolist() == [1, 7]
        assert video.get_batch([0]).shape == (1, 24, 32, 3)


def test_index_out_of_range_names_the_file(tiny_video):
    with open_video(tiny_video) as video, pytest.raises(IndexError, match=r"square.mp4: frame indices \[12\]"):
        video.get_batch([12])


def test_closed_reader_refuses_reads(tiny_video):
    video = open_video(tiny_video)
    video.close()
    with pytest.raises(VideoReadError, match="reader is closed"):
        video.get_batch([0])


# ---- bad input ---------------------------------------------------------------------------------
def test_zero_byte_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"empty.mp4: the file is empty \(0 bytes\), expected a video"):
        open_video(path)


def test_truncated_video(tmp_path, tiny_video):
    data = tiny_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match=r"truncated.mp4: .*(cannot open it as a video|corrupt or truncated)"):
        read_frames(path)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am not a video\n")
    with pytest.raises(
        VideoReadError, match=r"notes.txt: not a video \(expected one of .*\.mp4.*found a '.txt' file\)"
    ):
        open_video(path)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not really an mp4 either " * 20)
    with pytest.raises(VideoReadError, match=r"fake.mp4: decord cannot open it as a video .*PyAV fallback failed too"):
        open_video(fake)


def test_missing_path():
    with pytest.raises(FileNotFoundError, match="video not found: nowhere/x.mp4"):
        open_video("nowhere/x.mp4")


def test_frame_folder_with_missing_frame(tmp_path):
    folder = write_sequence(tmp_path, "gap", synthetic_frames(5), np.zeros((5, 48, 64), bool))
    (folder / "00002.jpg").unlink()
    with pytest.raises(
        VideoReadError,
        match=r"gap: frame numbering has gaps: missing frame\(s\) \[2\] between "
        r"00000.jpg and 00004.jpg",
    ):
        FrameFolder(folder)


def test_frame_folder_with_unreadable_frame(tmp_path):
    folder = write_sequence(tmp_path, "bad", synthetic_frames(4), np.zeros((4, 48, 64), bool))
    (folder / "00001.jpg").write_bytes(b"\xff\xd8 garbage, not a JPEG")
    video = FrameFolder(folder)
    assert video.get_batch([0]).shape == (1, 48, 64, 3)
    with pytest.raises(VideoReadError, match=r"00001.jpg: frame 1 of .*bad cannot be decoded as an image"):
        video.get_batch([0, 1])


def test_empty_frame_folder(tmp_path):
    with pytest.raises(VideoReadError, match="expected numbered .*jpg.* frames, found none"):
        FrameFolder(tmp_path)


def test_mask_of_another_size(tmp_path):
    path = tmp_path / "00000.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path)
    with pytest.raises(VideoReadError, match=r"00000.png: mask is 30x20 \(WxH\) but its frame is 64x48"):
        read_mask(path, (48, 64))


def test_mask_values(tmp_path):
    arr = np.zeros((4, 4), np.uint8)
    arr[1:3, 1:3] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray((arr > 0).astype(np.uint8)).save(tmp_path / "b.png")  # class-index mask (0/1)
    assert read_mask(tmp_path / "a.png").sum() == 4 and read_mask(tmp_path / "b.png").sum() == 4


def test_read_videos_counts_skips(tmp_path, tiny_video):
    bad = tmp_path / "zero.mp4"
    bad.write_bytes(b"")
    report = read_videos([tiny_video, bad], size=(24, 32), on_error="skip")
    assert list(report.videos) == [str(tiny_video)] and report.fps[str(tiny_video)] == pytest.approx(24)
    assert list(report.skipped) == [str(bad)] and "0 bytes" in report.skipped[str(bad)]
    assert "read 1 videos (12 frames); skipped 1 unreadable" in str(report)
    with pytest.raises(VideoReadError, match="0 bytes"):
        read_videos([bad])


# ---- decord's own problem files (shared) --------------------------------------------------------
def test_corrupted_mp4_gives_a_clear_error():
    path = need(EDGE / "corrupted.mp4")
    with pytest.raises(VideoReadError) as info:
        read_frames(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: decoding frames 0..49 failed: corrupt or truncated video")
    assert "PyAV fallback: decoding failed after" in msg and "Invalid data" in msg
    report = read_videos([path], on_error="skip")
    assert not report.videos and list(report.skipped) == [str(path)]


def test_unordered_mov_reads_in_presentation_order():
    path = need(EDGE / "unordered.mov")
    dec = read_frames(path, backend="decord")
    pyav = read_frames(path, backend="pyav")
    assert dec.shape == pyav.shape == (4, 50, 50, 3)
    assert np.array_equal(dec, pyav)
    with open_video(path) as video:  # random access equals the sequential decode
        assert np.array_equal(video.get_batch([3, 0, 2]), dec[[3, 0, 2]])


def test_rotated_clip_is_upright_with_both_backends():
    path = need(EDGE / "video_90.mov")
    dec = read_frames(path, backend="decord")
    pyav = read_frames(path, backend="pyav")
    assert dec.shape == (3, 568, 320, 3)  # stored 320x568 landscape, rotation flag -> portrait
    assert np.array_equal(dec, pyav)


def test_shared_clip_matches_its_jpeg_frames():
    clip = need(SHARED_VIDEO / "clips" / "blackswan.mp4")
    folder = need(SHARED_VIDEO / "davis" / "JPEGImages" / "blackswan")
    with open_video(clip, size=(240, 427)) as video:
        assert len(video) == 50
        frames = video.get_batch([0, 25])
    jpegs = FrameFolder(folder).get_batch([0, 25])
    assert np.abs(frames.astype(int) - jpegs).mean() < 8  # two lossy encodings of the same frames


def test_without_decord_auto_uses_pyav(tiny_video, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "decord" else real(name, *a))
    with open_video(tiny_video) as video:
        assert video.backend == "pyav" and brightness(video.get_batch([3]))[0] == 3
    with pytest.raises(ValueError, match="backend: expected 'auto', 'decord' or 'pyav', found 'opencv'"):
        open_video(tiny_video, backend="opencv")
