"""Reading audio: conversions logged once, bad files named with a clear reason, windows with offsets."""

import logging

import numpy as np
import pandas as pd
import pytest

from ssl_modal.audio import AudioError, AudioReader, load_segments, read_manifest, windows

from .conftest import tone, write_wav


def test_mono_file_at_target_rate_is_read_unchanged(tmp_path):
    wave = tone(0.5)
    path = write_wav(tmp_path / "a.wav", wave, subtype="FLOAT")
    out = AudioReader(8000).read(path)
    assert out.dtype == np.float32 and out.shape == (4000,)
    np.testing.assert_allclose(out, wave, atol=1e-7)


def test_stereo_is_downmixed_and_logged_once(tmp_path, caplog):
    reader = AudioReader(8000)
    paths = [write_wav(tmp_path / f"s{i}.wav", tone(0.25, channels=2), subtype="FLOAT") for i in range(3)]
    with caplog.at_level(logging.INFO, logger="ssl_modal"):
        outs = [reader.read(p) for p in paths]
    np.testing.assert_allclose(outs[0], tone(0.25) * 0.75, atol=1e-6)  # mean of 0.5x and 1.0x channels
    messages = [r.getMessage() for r in caplog.records if "down-mixing" in r.getMessage()]
    assert len(messages) == 1 and "2-channel" in messages[0] and "s0.wav" in messages[0]
    assert reader.counts["downmixed"] == 3 and "3 multi-channel files down-mixed to mono" in reader.summary()


def test_other_sample_rate_is_resampled_and_logged_once(tmp_path, caplog):
    reader = AudioReader(8000)
    paths = [write_wav(tmp_path / f"r{i}.wav", tone(0.5, sr=16000), sr=16000) for i in range(2)]
    with caplog.at_level(logging.INFO, logger="ssl_modal"):
        outs = [reader.read(p) for p in paths]
    assert outs[0].shape == (4000,)
    spectrum = np.abs(np.fft.rfft(outs[0]))
    assert abs(np.argmax(spectrum) * 8000 / 4000 - 440) <= 2  # the tone survives resampling
    messages = [r.getMessage() for r in caplog.records if "resampling" in r.getMessage()]
    assert len(messages) == 1 and "16000 Hz audio to 8000 Hz" in messages[0]
    assert "resampled to 8000 Hz: 2 from 16000 Hz" in reader.summary()


def test_corrupt_file_names_file_and_reason(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio at all")
    with pytest.raises(
        AudioError, match=r"broken\.wav: cannot decode audio \(.+\); expected a file soundfile can read"
    ):
        AudioReader(8000).read(bad)


def test_truncated_wav_is_reported(tmp_path):
    good = write_wav(tmp_path / "t.wav", tone(0.5))
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match=r"cut\.wav: cannot decode audio"):
        AudioReader(8000).read(tmp_path / "cut.wav")


def test_zero_length_file_and_file_without_samples(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: zero-length file \(0 bytes\)"):
        AudioReader(8000).read(empty)
    silent = write_wav(tmp_path / "nosamples.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match=r"nosamples\.wav: has no samples \(0 frames\)"):
        AudioReader(8000).read(silent)


def test_nan_samples_are_rejected_with_position(tmp_path):
    wave = tone(0.5)
    wave[800] = np.nan
    wave[900] = np.inf
    path = write_wav(tmp_path / "nan.wav", wave, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 2 NaN/inf samples \(first at sample 800, 0\.100 s\)"):
        AudioReader(8000).read(path)


def test_manifest_row_pointing_to_missing_file(tmp_path):
    write_wav(tmp_path / "a.wav", tone(0.2))
    pd.DataFrame({"path": ["a.wav", "gone.wav", "a.wav"], "label": [1, 2, 3]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(
        AudioError,
        match=r"m\.csv: 1 of 3 manifest rows point to missing files: row 2: gone\.wav "
        r"\(resolved to .*gone\.wav\)",
    ):
        read_manifest(tmp_path / "m.csv")


def test_manifest_without_path_column_and_missing_manifest(tmp_path):
    pd.DataFrame({"file": ["a.wav"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(AudioError, match=r"no path column 'path'; columns found: file\. Set data.path_column"):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="audio manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def test_bad_file_in_manifest_names_the_row(tmp_path):
    write_wav(tmp_path / "a.wav", tone(0.2))
    (tmp_path / "z.wav").write_bytes(b"")
    pd.DataFrame({"path": ["a.wav", "z.wav"]}).to_csv(tmp_path / "m.csv", index=False)
    frame = read_manifest(tmp_path / "m.csv")
    with pytest.raises(AudioError, match=r"m\.csv row 2: .*z\.wav: zero-length file"):
        load_segments(frame, AudioReader(8000), source=str(tmp_path / "m.csv"), progress=False)


def test_windows_cover_every_sample():
    assert windows(100, 100, 100) == [(0, 100)]
    assert windows(50, 100, 100) == [(0, 50)]
    assert windows(250, 100, 100) == [(0, 100), (100, 200), (200, 250)]
    assert windows(250, 100, 50) == [(0, 100), (50, 150), (100, 200), (150, 250)]
    for n, w, h in [(1000, 160, 160), (999, 160, 80), (161, 160, 160)]:
        covered = np.zeros(n, bool)
        for a, b in windows(n, w, h):
            covered[a:b] = True
        assert covered.all()


def test_long_file_is_cut_into_windows_with_offsets(tmp_path):
    write_wav(tmp_path / "long.wav", tone(2.5), subtype="FLOAT")
    write_wav(tmp_path / "short.wav", tone(0.4), subtype="FLOAT")
    pd.DataFrame({"path": ["long.wav", "short.wav"], "spk": ["a", "b"]}).to_csv(tmp_path / "m.csv", index=False)
    segs = load_segments(read_manifest(tmp_path / "m.csv"), AudioReader(8000), 1.0, None, ["spk"], progress=False)
    assert [(s["path"], s["offset"], s["duration"], s["row"], s["spk"]) for s in segs] == [
        ("long.wav", 0.0, 1.0, 1, "a"),
        ("long.wav", 1.0, 1.0, 1, "a"),
        ("long.wav", 2.0, 0.5, 1, "a"),
        ("short.wav", 0.0, 0.4, 2, "b"),
    ]
    np.testing.assert_allclose(segs[1]["wave"], tone(2.5)[8000:16000], atol=1e-7)


def test_manifest_offset_and_duration_columns(tmp_path):
    write_wav(tmp_path / "a.wav", tone(2.0), subtype="FLOAT")
    pd.DataFrame({"path": ["a.wav"], "offset": [0.5], "duration": [1.0]}).to_csv(tmp_path / "m.csv", index=False)
    segs = load_segments(read_manifest(tmp_path / "m.csv"), AudioReader(8000), None, progress=False)
    assert len(segs) == 1 and segs[0]["offset"] == 0.5 and segs[0]["duration"] == 1.0
    np.testing.assert_allclose(segs[0]["wave"], tone(2.0)[4000:12000], atol=1e-7)
    pd.DataFrame({"path": ["a.wav"], "offset": ["soon"]}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(AudioError, match=r"column 'offset' must hold seconds >= 0; rows \[1\] do not \(found 'soon'\)"):
        read_manifest(tmp_path / "b.csv")


def test_folder_source_lists_audio_files(tmp_path):
    write_wav(tmp_path / "b" / "x.wav", tone(0.1))
    write_wav(tmp_path / "a.wav", tone(0.1))
    (tmp_path / "notes.txt").write_text("not audio")
    frame = read_manifest(tmp_path)
    assert frame["rel_path"].tolist() == ["a.wav", "b/x.wav"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="empty: folder holds no audio files"):
        read_manifest(tmp_path / "empty")


def test_shared_fsdd_manifest_reads_at_8khz_mono():
    from .conftest import SHARED_FSDD

    if not (SHARED_FSDD / "metadata.csv").is_file():
        pytest.skip(f"{SHARED_FSDD} not present (the shared FSDD copy)")
    frame = read_manifest(SHARED_FSDD / "metadata.csv", path_column="file").iloc[::100]  # 20 files
    reader = AudioReader(8000)
    segs = load_segments(frame, reader, 1.0, label_columns=["digit", "speaker"], progress=False)
    assert len(segs) == 20 and reader.counts == {"files": 20, "downmixed": 0, "resampled": 0}
    assert [len(s["wave"]) for s in segs] == frame["num_samples"].tolist()
    assert segs[0]["path"].startswith("recordings/") and segs[0]["offset"] == 0.0
