"""encode order/shape, Parquet/.npy/Dataset export round-trips, load_model restores identical embeddings."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from ssl_modal import CheckpointError, TrainConfig, Trainer, encode, export, load_model
from ssl_modal.core.checkpoint import atomic_save, make_checkpoint
from ssl_modal.vectors import build_vector_model, collate_vectors
from tests.core.train_toy import toy_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_vector_model({"dim": 16})
    cfg = TrainConfig(output_dir=str(out), max_steps=20, batch_size=32, progress=False, tensorboard=False)
    Trainer(cfg).fit(model, toy_data(), collate_vectors)
    return model, out


def test_encode_keeps_input_order_and_shape(trained):
    model, _ = trained
    data = toy_data(n=37)
    emb = encode(model, data, batch_size=8)
    assert emb.shape == (37, 32) and emb.dtype == np.float32
    reversed_emb = encode(model, data[::-1], batch_size=5)
    np.testing.assert_allclose(reversed_emb[::-1], emb, rtol=1e-5, atol=1e-6)
    single = encode(model, [data[11]], batch_size=1)
    np.testing.assert_allclose(single[0], emb[11], rtol=1e-5, atol=1e-6)
    unit = encode(model, data, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)


def test_parquet_npy_and_dataset_exports_round_trip(trained, tmp_path):
    model, _ = trained
    frame = pd.DataFrame({"client": [f"c{i}" for i in range(50)], "x": toy_data(n=50)})
    expected = encode(model, frame)
    path = export(model, frame, tmp_path / "emb.parquet", id_columns=["client"], chunk_size=16, progress=False)
    table = pq.read_table(path).to_pandas()
    assert list(table.columns) == ["client", "embedding"]
    assert table["client"].tolist() == frame["client"].tolist()
    np.testing.assert_allclose(np.stack(table["embedding"].to_numpy()), expected, rtol=1e-5, atol=1e-5)

    npy = export(model, frame, tmp_path / "emb.npy", chunk_size=7, progress=False)
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5, atol=1e-5)

    import datasets

    folder = export(model, frame, tmp_path / "emb_ds", ids=frame["client"].tolist(), chunk_size=20, progress=False)
    ds = datasets.load_from_disk(str(folder))
    assert ds["id"] == frame["client"].tolist()
    np.testing.assert_allclose(np.asarray(ds["embedding"], dtype=np.float32), expected, rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*")), "temp files left behind"


def test_load_model_restores_identical_embeddings(trained):
    model, out = trained
    data = toy_data(n=20)
    reloaded = load_model(out)
    assert type(reloaded.encoder) is type(model.encoder)
    np.testing.assert_array_equal(encode(reloaded, data), encode(model, data))
    from_file = load_model(out / "model.pt")
    np.testing.assert_array_equal(encode(from_file, data), encode(model, data))


def test_load_model_errors_name_the_problem(trained, tmp_path):
    model, out = trained
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not an ssl-modal checkpoint"):
        load_model(plain)
    newer = make_checkpoint(model)
    newer["format_version"] = 99
    atomic_save(newer, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="format version 99.*upgrade ssl-modal"):
        load_model(tmp_path / "newer.pt")
    other = make_checkpoint(build_vector_model({"dim": 16, "objectives": {"reconstruct": 1.0}}))
    other["model"] = model.state_dict()
    atomic_save(other, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="do not fit the 'vectors' model"):
        load_model(tmp_path / "other.pt")
    foreign = make_checkpoint(model)
    foreign["spec"]["builder"] = "os:system"
    atomic_save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="refusing model builder 'os:system'"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)
