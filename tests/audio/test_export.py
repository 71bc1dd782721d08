"""Embeddings per file or per window (with offsets) from a manifest, and their Parquet export."""

import numpy as np
import pandas as pd
import pytest

from ssl_modal.audio import build_audio_model, encode_manifest, export_manifest

from .conftest import tiny_config, tone, write_wav


@pytest.fixture
def manifest(tmp_path):
    write_wav(
        tmp_path / "long.wav",
        np.concatenate([tone(1.0, freq=300), tone(1.0, freq=1200), tone(0.5, freq=2000)]),
        subtype="FLOAT",
    )
    write_wav(tmp_path / "short.wav", tone(0.6, freq=700), subtype="FLOAT")
    path = tmp_path / "m.csv"
    pd.DataFrame({"path": ["long.wav", "short.wav"], "label": ["x", "y"]}).to_csv(path, index=False)
    return path


def test_per_window_rows_carry_offsets_and_per_file_is_their_weighted_mean(manifest):
    model = build_audio_model(tiny_config()).eval()
    windows, emb_w = encode_manifest(model, manifest, per_window=True, window_seconds=1.0, label_columns=["label"])
    assert windows[["path", "offset", "duration", "label"]].values.tolist() == [
        ["long.wav", 0.0, 1.0, "x"],
        ["long.wav", 1.0, 1.0, "x"],
        ["long.wav", 2.0, 0.5, "x"],
        ["short.wav", 0.0, 0.6, "y"],
    ]
    assert emb_w.shape == (4, 32) and emb_w.dtype == np.float32
    assert not np.allclose(emb_w[0], emb_w[1])  # different content, different window vectors
    files, emb_f = encode_manifest(model, manifest, window_seconds=1.0)
    assert files[["path", "offset", "duration", "windows"]].values.tolist() == [
        ["long.wav", 0.0, 2.5, 3],
        ["short.wav", 0.0, 0.6, 1],
    ]
    np.testing.assert_allclose(emb_f[0], (emb_w[0] * 1.0 + emb_w[1] * 1.0 + emb_w[2] * 0.5) / 2.5, atol=1e-5)
    np.testing.assert_allclose(emb_f[1], emb_w[3], atol=1e-6)
    _, unit = encode_manifest(model, manifest, window_seconds=1.0, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)


def test_parquet_export_has_path_and_offset_columns(manifest, tmp_path):
    model = build_audio_model(tiny_config()).eval()
    out = export_manifest(model, manifest, tmp_path / "w.parquet", per_window=True, window_seconds=1.0)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["path", "offset", "duration", "embedding"]
    assert frame.offset.tolist() == [0.0, 1.0, 2.0, 0.0] and len(frame.embedding[0]) == 32
    _, emb = encode_manifest(model, manifest, per_window=True, window_seconds=1.0)
    np.testing.assert_allclose(np.stack(frame.embedding.to_numpy()), emb, atol=1e-6)
    files = pd.read_parquet(export_manifest(model, manifest, tmp_path / "f.parquet", window_seconds=1.0))
    assert list(files.columns) == ["path", "offset", "duration", "windows", "embedding"]
    assert files.path.tolist() == ["long.wav", "short.wav"] and files.windows.tolist() == [3, 1]
