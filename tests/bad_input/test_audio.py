"""Phone recordings given to an audio model: 8 kHz, stereo, 24-bit, zero-length, not audio, missing files."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from ssl_modal.cli import main
from tests.audio.conftest import tone, write_wav

from .conftest import Case, params, run_case, write_csv


def clips(tmp, *bad: tuple[str, str]) -> None:
    """Good clips a.wav (8 kHz mono), b.wav (16 kHz stereo 24-bit) and c.flac (44.1 kHz), then `bad` files."""
    write_wav(tmp / "rec" / "a.wav", tone(0.5, 8000), 8000)
    write_wav(tmp / "rec" / "b.wav", tone(0.4, 16000, channels=2), 16000, "PCM_24")
    write_wav(tmp / "rec" / "c.flac", tone(0.3, 44100), 44100, "PCM_16")
    for name, kind in bad:
        path = tmp / "rec" / name
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_text("this is not audio\n")
        elif kind == "no-frames":
            sf.write(str(path), np.zeros(0, dtype=np.float32), 8000)
        elif kind == "nan":
            sf.write(str(path), np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 8000, subtype="FLOAT")
        elif kind == "truncated":
            write_wav(path, tone(0.5, 8000), 8000)
            path.write_bytes(path.read_bytes()[:30])


def manifest(*bad: tuple[str, str], extra_rows: str = "", header: str = "path,speaker", flags: tuple = ()):
    def make(tmp):
        clips(tmp, *[b for b in bad if b[1] != "missing"])
        lines = ["rec/a.wav,s1", "rec/b.wav,s2", "rec/c.flac,s3"] + [f"rec/{name},s9" for name, _ in bad]
        write_csv(tmp / "m.csv", header + "\n" + "\n".join(lines) + "\n" + extra_rows)
        return ["embed", "{audio}", str(tmp / "m.csv"), "-o", "{out}", *flags]

    return make


def folder(*files: str):
    def make(tmp):
        (tmp / "rec").mkdir()
        for name in files:
            if name.endswith((".wav", ".flac")):
                write_wav(tmp / "rec" / name, tone(0.3, 8000), 8000)
            else:
                (tmp / "rec" / name).write_text("notes")
        return ["embed", "{audio}", str(tmp / "rec"), "-o", "{out}"]

    return make


CASES = [
    Case(
        "phone-rates-stereo-24bit",
        manifest(),
        0,
        r"3 files read; 1 multi-channel files down-mixed to mono; "
        r"resampled to 8000 Hz: 1 from 16000 Hz, 1 from 44100 Hz.*wrote 3 embeddings",
    ),
    Case(
        "zero-length-file",
        manifest(("d.wav", "empty")),
        2,
        r"m\.csv row 4: .*d\.wav: zero-length file \(0 bytes\); expected an audio file; set data\.on_error: skip",
    ),
    Case(
        "zero-length-skipped",
        manifest(("d.wav", "empty"), flags=("--on-error", "skip")),
        0,
        r"1 unusable files skipped \(.*row 4.*zero-length.*wrote 3 embeddings",
    ),
    Case("wav-without-frames", manifest(("d.wav", "no-frames")), 2, r"d\.wav: has no samples \(0 frames\)"),
    Case("text-renamed-wav", manifest(("d.wav", "text")), 2, r"row 4: .*d\.wav: cannot decode audio"),
    Case(
        "truncated-header",
        manifest(("d.wav", "truncated")),
        2,
        r"row 4: .*d\.wav: (cannot decode audio|has no "
        r"samples)",
    ),
    Case("nan-samples", manifest(("d.wav", "nan")), 2, r"d\.wav: 100 NaN/inf samples \(first at sample 1"),
    Case(
        "missing-file",
        manifest(("gone.wav", "missing")),
        2,
        r"m\.csv: 1 of 4 manifest rows point to missing files: row 4: rec/gone\.wav .*set data\.on_error: skip",
    ),
    Case(
        "missing-file-skipped",
        manifest(("gone.wav", "missing"), flags=("--on-error", "skip")),
        0,
        r"1 unusable files skipped \(.*audio file not found.*wrote 3 embeddings",
    ),
    Case(
        "all-files-bad-skipped",
        lambda tmp: (
            write_csv(tmp / "x.wav", "")
            and write_csv(tmp / "m.csv", "path\nx.wav\n")
            and ["embed", "{audio}", str(tmp / "m.csv"), "-o", "{out}", "--on-error", "skip"]
        ),
        2,
        r"no usable audio: all 1 files were skipped",
    ),
    Case(
        "no-path-column",
        manifest(header="file,speaker"),
        2,
        r"m\.csv: no path column 'path'; columns found: file, speaker",
    ),
    Case("custom-path-column", manifest(header="file,speaker", flags=("--column", "file")), 0, r"wrote 3 embeddings"),
    Case("empty-path-cell", manifest(extra_rows=",s5\n"), 2, r"1 row\(s\) have an empty 'path' \(rows \[4\]\)"),
    Case(
        "negative-offset",
        lambda tmp: (
            clips(tmp)
            or write_csv(tmp / "m.csv", "path,offset\nrec/a.wav,-1\n")
            and ["embed", "{audio}", str(tmp / "m.csv"), "-o", "{out}"]
        ),
        2,
        r"column 'offset' must hold seconds >= 0",
    ),
    Case("folder-with-notes", folder("a.wav", "b.flac", "README.txt", "notes.docx"), 0, r"wrote 2 embeddings"),
    Case("folder-without-audio", folder("README.txt"), 2, r"rec: folder holds no audio files"),
    Case(
        "id-column-missing",
        manifest(flags=("--id-column", "spkr")),
        2,
        r"--id-column 'spkr' is not a column.*did you mean 'speaker'",
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_audio_inputs(case, tmp_path, capsys, models):
    run_case(case, tmp_path, capsys, models)


def test_skipped_files_keep_their_manifest_rows(tmp_path, models):
    manifest(("d.wav", "empty"))(tmp_path)
    write_csv(tmp_path / "m.csv", "path,speaker\nrec/d.wav,s9\nrec/a.wav,s1\nrec/b.wav,s2\n")
    assert (
        main(
            [
                "embed",
                str(models["audio"]),
                str(tmp_path / "m.csv"),
                "-o",
                str(tmp_path / "e.parquet"),
                "--on-error",
                "skip",
            ]
        )
        == 0
    )
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column("row").to_pylist() == [2, 3] and table.column("path").to_pylist() == ["rec/a.wav", "rec/b.wav"]
    assert (
        main(
            [
                "embed",
                str(models["audio"]),
                str(tmp_path / "m.csv"),
                "-o",
                str(tmp_path / "s.parquet"),
                "--on-error",
                "skip",
                "--id-column",
                "speaker",
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "s.parquet").column("speaker").to_pylist() == ["s1", "s2"]


def test_recipe_on_error_skip_trains_on_the_good_files(tmp_path):
    from ssl_modal.audio.config import AudioConfig
    from ssl_modal.audio.recipe import read_segments

    manifest(("d.wav", "empty"), ("e.wav", "text"))(tmp_path)
    cfg = AudioConfig()
    cfg.data.manifest, cfg.train.progress = str(tmp_path / "m.csv"), False
    with pytest.raises(ValueError, match=r"row 4: .*zero-length.*set data\.on_error: skip"):
        read_segments(cfg)
    cfg.data.on_error = "skip"
    assert sorted({s["row"] for s in read_segments(cfg)}) == [1, 2, 3]
