"""client_embeddings pooling: shapes, "mean"/"max"/"std"/"field_mean" against a hand computation over every event
of every window (histories spanning several windows, overlapping windows counted once), "last" as before."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.core.export import encode
from ssl_modal.transactions.client_pooling import CLIENT_POOLING, POOLING_PARTS, check_pooling
from ssl_modal.transactions.config import EncoderConfig, EvalConfig, ObjectivesConfig
from ssl_modal.transactions.features import client_embeddings
from ssl_modal.transactions.mapping import ColumnMapping
from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor
from tests.transactions.tables import COLUMNS, raw_table

HIDDEN = 12


def _model(stride=None):
    """An untrained tiny model (the pooling is arithmetic on its outputs: training adds nothing to check)."""
    table = raw_table(clients=6, per_client=40)
    pre = TransactionPreprocessor(
        PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=16, window_stride=stride, amount_bins=8)
    )
    sequences = pre.fit_transform(table)
    torch.manual_seed(0)
    model = build_transactions_model(
        transactions_model_config(
            pre, EncoderConfig(hidden=HIDDEN, mcc_dim=4, cat_dim=3, num_dim=2), ObjectivesConfig(), sequences
        )
    )
    return model.eval(), table, sequences


def _by_hand(model, sequences):
    """{client: (per-event states (N, H), per-event input vectors (N, F), window pooled (W, H))}, one window
    at a time, every transaction once (its first window)."""
    out, seen = {}, set()
    with torch.no_grad():
        for i in range(len(sequences)):
            row = sequences[i]
            batch = model.collate([row])
            enc = model.encoder(batch)
            x = model.encoder.embed(batch)
            tx = sequences.table.column("transaction_id")[i].as_py()
            keep = [j for j, t in enumerate(tx) if t not in seen]
            seen.update(tx)
            client = sequences.table.column("client_id")[i].as_py()
            states, inputs, pooled = out.setdefault(client, ([], [], []))
            states.append(enc.tokens[0, keep].double().numpy())
            inputs.append(x[0, keep].double().numpy())
            pooled.append(enc.pooled[0].double().numpy())
    return {c: (np.concatenate(s), np.concatenate(f), np.stack(p)) for c, (s, f, p) in out.items()}


def test_shapes_and_blocks_in_order():
    model, table, sequences = _model()
    F = model.encoder.embed.out_dim
    full = client_embeddings(model, table, pooling=list(POOLING_PARTS))
    assert list(full.columns[:3]) == ["client_id", "windows", "events"]
    assert full.shape == (6, 3 + 4 * HIDDEN + F)
    assert (full["windows"] == 3).all() and (full["events"] == 40).all()  # 40 events: windows of 16, 16, 8
    for part, width in [("last", HIDDEN), ("mean", HIDDEN), ("field_mean", F)]:
        one = client_embeddings(model, table, pooling=part)
        assert one.shape == (6, 3 + width)
    mean_max = client_embeddings(model, table, pooling=["mean", "max"]).filter(like="emb_").to_numpy()
    mean = client_embeddings(model, table, pooling="mean").filter(like="emb_").to_numpy()
    np.testing.assert_allclose(mean_max[:, :HIDDEN], mean, rtol=1e-6)


@pytest.mark.parametrize("stride", [None, 8])  # non-overlapping windows; windows overlapping by half
def test_pooled_over_every_event_of_every_window(stride):
    model, table, sequences = _model(stride)
    got = client_embeddings(model, sequences, pooling=["mean", "max", "std", "field_mean", "last"])
    got = got.set_index("client_id")
    expected_windows = 3 if stride is None else 4  # 40 events: starts 0, 16, 32 / 0, 8, 16, 24 (24 + 16 = 40)
    assert (got["windows"] == expected_windows).all()
    hand = _by_hand(model, sequences)
    for client, (states, inputs, pooled) in hand.items():
        assert len(states) == 40  # every event once, also where windows overlap
        want = np.concatenate([states.mean(0), states.max(0), states.std(0), inputs.mean(0), pooled.mean(0)])
        np.testing.assert_allclose(got.loc[client].filter(like="emb_").to_numpy(), want, rtol=1e-4, atol=1e-5)


def test_last_is_the_mean_of_the_windows_pooled_vectors_and_default_columns():
    model, table, sequences = _model()
    got = client_embeddings(model, table, pooling="last")
    per_window = pd.DataFrame(encode(model, sequences), index=sequences.table.column("client_id").to_pylist())
    want = per_window.groupby(level=0, sort=False).mean()
    assert list(want.index) == list(got["client_id"])
    np.testing.assert_allclose(got.filter(like="emb_").to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-6)
    width = {"last": HIDDEN, "mean": HIDDEN, "max": HIDDEN, "std": HIDDEN, "field_mean": model.encoder.embed.out_dim}
    default = client_embeddings(model, table)  # the documented columns: client_id, windows, events, emb_000 ...
    dim = sum(width[p] for p in CLIENT_POOLING)
    assert list(default.columns) == ["client_id", "windows", "events"] + [f"emb_{i:03d}" for i in range(dim)]
    assert EvalConfig().client_pooling == list(CLIENT_POOLING)


def test_default_pooling_is_the_one_the_model_was_built_to_export():
    """A run's `eval.client_pooling` travels in the checkpoint: `ssl-modal embed` and Spark scoring (which call
    client_embeddings without `pooling`) give the run's own client_embeddings.parquet vectors."""
    model, table, sequences = _model()
    config = transactions_model_config(
        model.preprocessor,
        EncoderConfig(hidden=HIDDEN, mcc_dim=4, cat_dim=3, num_dim=2),
        ObjectivesConfig(),
        sequences,
        client_pooling=["last"],
    )
    assert config["client_pooling"] == ["last"]
    torch.manual_seed(0)
    last_model = build_transactions_model(config).eval()
    got = client_embeddings(last_model, table)
    want = client_embeddings(last_model, table, pooling="last")
    pd.testing.assert_frame_equal(got, want)
    assert got.filter(like="emb_").shape[1] == HIDDEN  # not the CLIENT_POOLING width of a model without the key
    assert client_embeddings(model, table).filter(like="emb_").shape[1] > HIDDEN


@pytest.mark.parametrize("bad", [[], ["mean", "mean"], ["avg"], "last_state"])
def test_unknown_or_repeated_parts_are_refused(bad):
    with pytest.raises(ValueError, match="expected distinct parts among"):
        check_pooling(bad)
    with pytest.raises(ValueError, match="eval.client_pooling: expected distinct parts"):
        EvalConfig(client_pooling=bad)


@pytest.mark.parametrize("stride", [None, 8])
def test_outer_part_is_the_mean_outer_product_of_two_fields_over_every_event(stride):
    model, table, sequences = _model(stride)
    embed = model.encoder.embed
    got = client_embeddings(model, sequences, pooling=["mean", "outer:mcc:amount_bin"]).set_index("client_id")
    assert got.filter(like="emb_").shape[1] == HIDDEN + 4 * 3  # mcc_dim x cat_dim
    seen, sums, counts = set(), {}, {}
    with torch.no_grad():
        for i in range(len(sequences)):
            batch = model.collate([sequences[i]])
            tx = sequences.table.column("transaction_id")[i].as_py()
            keep = [j for j, t in enumerate(tx) if t not in seen]  # each event once, from its first window
            seen.update(tx)
            a = embed.embedding_of("mcc")(batch["cat"]["mcc"])[0, keep].double().numpy()
            b = embed.embedding_of("amount_bin")(batch["cat"]["amount_bin"])[0, keep].double().numpy()
            client = sequences.table.column("client_id")[i].as_py()
            sums[client] = sums.get(client, 0) + np.einsum("td,te->de", a, b).ravel()
            counts[client] = counts.get(client, 0) + len(keep)
    for client, total in sums.items():
        assert counts[client] == 40
        want = total / counts[client]
        np.testing.assert_allclose(got.loc[client].filter(like="emb_").to_numpy()[HIDDEN:], want, rtol=1e-4, atol=1e-6)


def test_outer_part_names_two_fields_of_the_encoder():
    assert check_pooling(["mean", "outer:mcc:hour"]) == ("mean", "outer:mcc:hour")
    for bad in (["outer:mcc"], ["outer:mcc:"], ["outer:a:b:c"], [3]):
        with pytest.raises(ValueError, match="'outer:<field>:<field>'"):
            check_pooling(bad)
    model, table, _ = _model()
    with pytest.raises(ValueError, match=r"pooling 'outer:mcc:city': no categorical field \['city'\]"):
        client_embeddings(model, table, pooling="outer:mcc:city")
