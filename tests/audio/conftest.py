"""Shared helpers for the audio tests: synthetic WAV files, a tiny model config, the repo's FSDD sample."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "audio"
SHARED_FSDD = REPO.parent / "shared" / "data" / "audio" / "fsdd"


def tone(seconds: float, sr: int = 8000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


def write_wav(path: Path, data: np.ndarray, sr: int = 8000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def tiny_config(**weights) -> dict:
    from ssl_modal.audio import AudioConfig, audio_model_config

    cfg = AudioConfig()
    cfg.encoder.dim, cfg.encoder.num_layers, cfg.encoder.num_heads, cfg.encoder.ff_dim = 32, 1, 2, 64
    cfg.encoder.dropout = 0.0
    if weights:
        cfg.weights = weights
    return audio_model_config(cfg, None)


def tiny_run_overrides(out, manifest, *, steps: int, batch_size: int = 8, dim: int = 16, channels: int = 4) -> list:
    """Config overrides for a quiet few-step recipe run writing to `out` on `manifest`."""
    return [
        f"train.output_dir={out}",
        f"data.manifest={manifest}",
        f"train.max_steps={steps}",
        "train.progress=false",
        "train.tensorboard=false",
        "train.monitor_every=0",
        f"train.batch_size={batch_size}",
        f"encoder.dim={dim}",
        f"encoder.channels={channels}",
    ]


@pytest.fixture
def sample_manifest_rows():
    """Rows of the shipped sample manifest (path, digit, speaker, index)."""
    import pandas as pd

    return pd.read_csv(SAMPLE / "manifest.csv")
