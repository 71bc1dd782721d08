"""Reading audio: soundfile decoding, down-mix to mono, resampling, manifests, fixed windows.

Audio is read with `soundfile` (torchaudio's own file I/O needs torchcodec). Multi-channel files are
down-mixed to mono by averaging the channels; other sample rates are resampled with
`torchaudio.functional.resample`. Each kind of conversion is logged once per `AudioReader` (with the
first file it happened to) and counted in `AudioReader.summary()`. Files longer than a window are cut
into windows of `window_seconds` (the last, shorter window is kept), each with its offset in seconds,
so embeddings map back to time. Bad input raises `AudioError` naming the file (and manifest row).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio

from ssl_modal.data.readers import DataFileNotFoundError, DataValidationError, read_table

log = logging.getLogger("ssl_modal")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


class AudioError(DataValidationError):
    """An audio file or manifest that cannot be used; the message names the file (and row) and why."""


class AudioReader:
    """Reads files to mono float32 at `sample_rate`; logs each conversion kind once and counts them."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.counts = {"files": 0, "downmixed": 0, "resampled": 0}
        self.resampled_from: dict[int, int] = {}
        self.skipped: list[str] = []  # messages of files left out under on_error="skip"
        self._logged: set[str] = set()

    def _once(self, kind: str, message: str, *args) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.info(message + " (said once; AudioReader.summary() gives the count)", *args)

    @staticmethod
    def _undecodable(path: Path, at: str, exc: Exception) -> AudioError:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return AudioError(
            f"{at}{path}: cannot decode audio ({reason}); expected a file soundfile can "
            f"read ({', '.join(s.lstrip('.').upper() for s in AUDIO_SUFFIXES[:4])})"
        )

    def read(self, path: str | Path, offset: float = 0.0, duration: float | None = None, where: str = "") -> np.ndarray:
        """Samples of `path` from `offset` seconds for `duration` seconds (None: to the end)."""
        path = Path(path)
        at = f"{where}: " if where else ""
        if not path.is_file():
            raise AudioError(f"{at}audio file not found: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"{at}{path}: zero-length file (0 bytes); expected an audio file")
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise self._undecodable(path, at, exc) from None
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        try:
            data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise self._undecodable(path, at, exc) from None
        if data.shape[0] == 0:
            what = "has no samples (0 frames)" if start == 0 else f"has no samples after offset {offset} s"
            raise AudioError(f"{at}{path}: {what}; expected at least one sample")
        bad = ~np.isfinite(data)
        if bad.any():
            first = int(np.argmax(bad.any(axis=1)))
            raise AudioError(
                f"{at}{path}: {int(bad.sum())} NaN/inf samples (first at sample {first}, "
                f"{first / sr:.3f} s); expected finite samples"
            )
        self.counts["files"] += 1
        if data.shape[1] > 1:
            self.counts["downmixed"] += 1
            self._once(
                "downmix",
                "down-mixing %d-channel audio to mono by averaging the channels (first: %s)",
                data.shape[1],
                path,
            )
        wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if sr != self.sample_rate:
            self.counts["resampled"] += 1
            self.resampled_from[sr] = self.resampled_from.get(sr, 0) + 1
            self._once(f"resample-{sr}", "resampling %d Hz audio to %d Hz (first: %s)", sr, self.sample_rate, path)
            wave = torchaudio.functional.resample(
                torch.from_numpy(np.ascontiguousarray(wave)), sr, self.sample_rate
            ).numpy()
        return np.ascontiguousarray(wave, dtype=np.float32)

    def summary(self) -> str:
        msg = f"{self.counts['files']:,} files read"
        if self.counts["downmixed"]:
            msg += f"; {self.counts['downmixed']:,} multi-channel files down-mixed to mono"
        if self.counts["resampled"]:
            rates = ", ".join(f"{n:,} from {sr} Hz" for sr, n in sorted(self.resampled_from.items()))
            msg += f"; resampled to {self.sample_rate} Hz: {rates}"
        if self.skipped:
            shown = "; ".join(self.skipped[:3]) + ("; ..." if len(self.skipped) > 3 else "")
            msg += f"; {len(self.skipped):,} unusable files skipped ({shown})"
        return msg


def read_manifest(source: str | Path, path_column: str = "path", on_error: str = "error") -> pd.DataFrame:
    """A manifest table (CSV/Parquet/...: `path_column`, optional offset/duration in seconds, any label
    columns), or a folder of audio files (one row per file, sorted). Paths come back absolute; every
    row pointing to a missing file is reported (row number and path) in one AudioError, or with
    `on_error="skip"` dropped and listed in `frame.attrs["skipped"]` ("_manifest_row" keeps each 1-based data row)."""
    if on_error not in ("error", "skip"):
        raise ValueError(f"data.on_error: expected 'error' or 'skip', found '{on_error}'")
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise AudioError(f"{source}: folder holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return pd.DataFrame({"path": [str(p) for p in files], "rel_path": [str(p.relative_to(source)) for p in files]})
    if not source.exists():
        raise DataFileNotFoundError(f"audio manifest not found: {source} (working directory {Path.cwd()})")
    frame = read_table(source)
    if path_column not in frame.columns:
        raise AudioError(
            f"{source}: no path column '{path_column}'; columns found: {', '.join(map(str, frame.columns))}. "
            "Set data.path_column to the column holding the audio file paths"
        )
    if len(frame) == 0:
        raise AudioError(f"{source}: the manifest has no rows")
    frame = frame.reset_index(drop=True)
    raw = frame[path_column]
    empty = [i + 1 for i, v in enumerate(raw) if not isinstance(v, str) or not v.strip()]
    if empty:
        raise AudioError(f"{source}: {len(empty)} row(s) have an empty '{path_column}' (rows {empty[:5]})")
    base = source.parent
    resolved = [str(p if (p := Path(v)).is_absolute() else base / p) for v in raw]
    missing = [(i + 1, raw[i], resolved[i]) for i in range(len(frame)) if not Path(resolved[i]).is_file()]
    skipped = []
    if missing:
        shown = "; ".join(f"row {r}: {v} (resolved to {p})" for r, v, p in missing[:5])
        more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        message = f"{source}: {len(missing)} of {len(frame)} manifest rows point to missing files: {shown}{more}"
        if on_error == "error" or len(missing) == len(frame):
            hint = "; set data.on_error: skip to leave them out" if len(missing) < len(frame) else ""
            raise AudioError(message + hint)
        log.warning("%s; skipped (data.on_error: skip)", message)
        skipped = [f"{source} row {r}: audio file not found: {p}" for r, _, p in missing]
    for col in ("offset", "duration"):
        if col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce")
            bad = [int(i) + 1 for i in np.flatnonzero(values.isna() & frame[col].notna() | (values < 0))]
            if bad:
                raise AudioError(
                    f"{source}: column '{col}' must hold seconds >= 0; rows {bad[:5]} do not "
                    f"(found {frame[col].iloc[bad[0] - 1]!r})"
                )
    out = frame.copy()
    out["rel_path"] = raw.astype(str)
    out["path"] = resolved
    out["_manifest_row"] = np.arange(1, len(out) + 1)
    if skipped:
        out = out.drop(index=[r - 1 for r, _, _ in missing]).reset_index(drop=True)
    out.attrs["skipped"] = skipped
    return out


def windows(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """(start, stop) sample ranges covering `n_samples`: full windows every `hop`, plus a shorter last one
    so that no sample is dropped (a clip no longer than `window` is one range)."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be > 0 samples, found {window} and {hop}")
    if n_samples <= window:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - window + 1, hop))
    out = [(s, s + window) for s in starts]
    if out[-1][1] < n_samples:
        out.append((starts[-1] + hop, n_samples))
    return out


def load_segments(
    frame: pd.DataFrame,
    reader: AudioReader,
    window_seconds: float | None = 1.0,
    hop_seconds: float | None = None,
    label_columns: list[str] | tuple = (),
    source: str = "manifest",
    progress: bool = True,
    on_error: str = "error",
) -> list[dict]:
    """Read every row of a manifest frame (from `read_manifest`) and cut it into windows.

    Returns one dict per window: path (as written in the manifest), offset (seconds from the start of
    the file), duration (seconds), wave (float32 mono at `reader.sample_rate`), row (1-based) and the
    label columns. `window_seconds=None` keeps whole files. `on_error="skip"`: a file that cannot be read
    (undecodable, zero-length, no samples, NaN) is left out and its message kept in `reader.skipped`.
    """
    if on_error not in ("error", "skip"):
        raise ValueError(f"data.on_error: expected 'error' or 'skip', found '{on_error}'")
    reader.skipped.extend(frame.attrs.get("skipped", []))
    missing = [c for c in label_columns if c not in frame.columns]
    if missing:
        raise AudioError(
            f"{source}: label column(s) {missing} not found; columns: {', '.join(map(str, frame.columns))}"
        )
    sr = reader.sample_rate
    win = None if window_seconds is None else max(1, int(round(window_seconds * sr)))
    hop = win if hop_seconds is None or win is None else max(1, int(round(hop_seconds * sr)))
    rows = frame.to_dict("records")
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="read audio", unit="file", leave=False)
    out = []
    for i, rec in enumerate(rows):
        base_offset, dur = (None if pd.isna(v := rec.get(k)) else float(v) for k in ("offset", "duration"))
        base_offset = base_offset or 0.0
        row = int(rec.get("_manifest_row", i + 1))
        try:
            wave = reader.read(rec["path"], base_offset, dur, where=f"{source} row {row}")
        except AudioError as exc:
            if on_error == "error":
                raise AudioError(f"{exc}; set data.on_error: skip to leave such files out") from None
            reader.skipped.append(str(exc))
            log.warning("skipping %s", exc)
            continue
        labels = {c: rec[c] for c in label_columns}
        for start, stop in windows(len(wave), win, hop) if win else [(0, len(wave))]:
            out.append(
                {
                    "path": rec["rel_path"],
                    "offset": round(base_offset + start / sr, 6),
                    "duration": round((stop - start) / sr, 6),
                    "wave": wave[start:stop],
                    "row": row,
                    **labels,
                }
            )
    if not out:
        raise AudioError(
            f"{source}: no usable audio: all {len(frame)} files were skipped ({'; '.join(reader.skipped[:3])})"
        )
    return out
