"""features / client_embeddings / MCC export on a briefly trained model, and `ssl-modal features`."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.core.export import load_model
from ssl_modal.core.trainer import Trainer
from ssl_modal.transactions.config import EncoderConfig, ObjectivesConfig
from ssl_modal.transactions.features import client_embeddings, features
from ssl_modal.transactions.mcc import mcc_embeddings, nearest_mccs
from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
from tests.train_configs import quiet_config
from tests.transactions.tables import COLUMNS, raw_table

FEATURES = [
    "surprise_mcc",
    "surprise_amount_bin",
    "surprise_type",
    "surprise_total",
    "order_score",
    "gap_residual",
    "history_distance",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor

    torch.set_num_threads(1)
    table = raw_table()
    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=16, amount_bins=8))
    sequences = pre.fit_transform(table)
    torch.manual_seed(0)
    model = build_transactions_model(
        transactions_model_config(
            pre, EncoderConfig(hidden=32, mcc_dim=8, cat_dim=4, num_dim=4), ObjectivesConfig(), sequences
        )
    )
    out = tmp_path_factory.mktemp("tx_model")
    cfg = quiet_config(
        out,
        max_steps=150,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=10,
        log_every=25,
    )
    result = Trainer(cfg).fit(model, sequences, model.collate)
    return model.eval(), table, result


def test_one_row_per_transaction_in_input_order(trained):
    model, table, _ = trained
    feats = features(model, table, progress=False, windowing=True)
    assert len(feats) == len(table) and feats["tx"].tolist() == table["tx"].tolist()
    assert feats["scored"].all() and set(FEATURES) <= set(feats.columns)
    assert not {"position", "window_events"} & set(features(model, table.head(50), progress=False).columns)
    assert list(feats.columns[:3]) == ["tx", "client", "scored"]  # the input's key names and dtypes
    assert feats["tx"].dtype == table["tx"].dtype and (feats["client"] == table["client"]).all()
    first = feats["position"] == 0
    assert feats.loc[first, "history_distance"].isna().all() and feats.loc[~first, "history_distance"].notna().all()
    assert feats.loc[:, ["surprise_mcc", "order_score"]].notna().all().all()
    assert feats["order_score"].between(0, 1).all() and (feats["surprise_mcc"] >= 0).all()


def test_features_do_not_depend_on_input_row_order(trained):
    model, table, _ = trained
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = features(model, table, progress=False).set_index("tx")
    b = features(model, shuffled, progress=False)
    assert b["tx"].tolist() == shuffled["tx"].tolist()
    b = b.set_index("tx").loc[a.index]
    pd.testing.assert_frame_equal(a[FEATURES], b[FEATURES], atol=1e-5, rtol=1e-5)


def test_save_load_gives_identical_features(trained):
    model, table, result = trained
    loaded = load_model(result.checkpoint)
    a, b = features(model, table, progress=False), features(loaded, table, progress=False)
    pd.testing.assert_frame_equal(a, b)


def test_implausible_mcc_is_more_surprising_than_typical(trained):
    model, table, _ = trained
    odd = table.copy()
    victim = odd.index[(odd["client"] == "c0")][20]
    odd.loc[victim, "mcc"] = 7011  # a hotel code inside a grocery-only history
    feats = features(model, odd, progress=False)
    client = feats[feats["client"].astype(str) == "c0"]
    typical = client.drop(index=victim)["surprise_mcc"].median()
    assert feats.loc[victim, "surprise_mcc"] > typical + 1.0, (feats.loc[victim, "surprise_mcc"], typical)


def test_client_embeddings_one_row_per_client(trained):
    model, table, _ = trained
    emb = client_embeddings(model, table)
    assert sorted(emb["client_id"].astype(str)) == sorted(table["client"].unique())
    assert (emb["events"] == 40).all() and (emb["windows"] == 3).all()
    # the default pooling: mean of the 32-wide states and of the input vectors over every event
    assert emb.filter(like="emb_").shape[1] == 32 + model.encoder.embed.out_dim


def test_mcc_export_counts_and_neighbours(trained):
    model, table, _ = trained
    codes = mcc_embeddings(model)
    counts = table["mcc"].astype(str).value_counts()
    got = dict(zip(codes["code"].astype(str), codes["count"], strict=True))
    assert got == counts.to_dict() and len(codes["vector"].iloc[0]) == 8
    near = nearest_mccs(model, codes["code"].iloc[0], k=3)
    assert len(near) == 3 and near["similarity"].is_monotonic_decreasing
    assert len(mcc_embeddings(model, "type")) == 2


def test_missing_mapped_column_error_comes_through_features(trained):
    model, table, _ = trained
    with pytest.raises((KeyError, ValueError), match="amt"):
        features(model, table.drop(columns=["amt"]), progress=False)


def test_cli_features_writes_one_row_per_transaction(trained, tmp_path, capsys):
    from ssl_modal.cli import main

    _, table, result = trained
    src, out = tmp_path / "tx.csv", tmp_path / "feats.parquet"
    table.to_csv(src, index=False)
    assert main(["features", str(result.checkpoint), str(src), "-o", str(out)]) == 0
    written = pd.read_parquet(out)
    assert len(written) == len(table) and written["tx"].tolist() == table["tx"].tolist()
    assert f"wrote {len(table)} rows" in capsys.readouterr().out
    rnd_out = tmp_path / "rnd.parquet"
    assert main(["features", str(result.checkpoint), str(src), "-o", str(rnd_out), "--random-init", "3"]) == 0
    rnd = pd.read_parquet(rnd_out)
    assert len(rnd) == len(table) and not np.allclose(rnd["surprise_mcc"], written["surprise_mcc"])


def test_random_init_is_seeded_and_keeps_the_architecture(trained):
    from ssl_modal.transactions.model import random_init

    model, _, _ = trained
    a, b, c = random_init(model, 1), random_init(model, 1), random_init(model, 2)
    sa, sb, sc, sm = (m.state_dict() for m in (a, b, c, model))
    assert sa.keys() == sm.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.rnn.weight_hh_l0"], sc["encoder.rnn.weight_hh_l0"])
    assert a.preprocessor.state_dict() == model.preprocessor.state_dict()


def test_features_on_a_model_without_preprocessor_is_refused():
    from tests.transactions.synthetic import FIELDS

    model = build_transactions_model({"fields": FIELDS, "encoder": {"hidden": 8}})
    with pytest.raises(ValueError, match="no fitted preprocessor"):
        features(model, pd.DataFrame({"a": [1]}))


def test_exact_gru_surprise_equals_hiding_one_event_at_a_time(trained):
    """The one-cell-step shortcut equals re-running the window with exactly that event hidden
    (interleaved patterns with passes >= window length hide one event per window per pass)."""
    from ssl_modal.transactions.features import window_features

    model, table, _ = trained
    sequences = model.preprocessor.transform(table)
    fast = window_features(model, sequences, method="auto")
    slow = window_features(model, sequences, method="interleaved", passes=16)
    cols = ["surprise_mcc", "surprise_amount_bin", "surprise_type", "surprise_total"]
    pd.testing.assert_frame_equal(fast[cols], slow[cols], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="method: expected 'auto' or 'interleaved'"):
        window_features(model, sequences, method="fast")


def test_docs_quick_start_selects_only_numeric_features(trained):
    """docs/transactions.md's LightGBM snippet drops the key columns whatever the input calls them."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "transactions.md").read_text()
    block = re.findall(r"```python\n(.*?)```", doc, flags=re.S)[0]
    line = next(x for x in block.splitlines() if x.startswith("X = "))
    model, table, _ = trained
    feats = features(model, table, progress=False)
    namespace = {"pd": pd, "table": table.rename(columns={COLUMNS["amount"]: "amount"}), "feats": feats}
    exec(line, namespace)
    X = namespace["X"]
    assert list(X.columns) == ["amount", *feats.columns[3:]] and len(X) == len(table)
    assert not {"tx", "client", "scored"} & set(X.columns)
    assert all(pd.api.types.is_numeric_dtype(t) for t in X.dtypes), X.dtypes.to_dict()
