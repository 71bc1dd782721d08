"""Incremental scoring from a stored client state equals `features` on the whole table (single-window
clients); the store refuses another model, out-of-order events and reports duplicate ids."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.transactions.config import EncoderConfig, HistoryConfig, ObjectivesConfig
from ssl_modal.transactions.features import features
from ssl_modal.transactions.incremental import StateStore, score_new
from ssl_modal.transactions.model import build_transactions_model, random_init, transactions_model_config
from tests.transactions.tables import COLUMNS, raw_table


@pytest.fixture(scope="module")
def setup():
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor

    table = raw_table(clients=6, per_client=30)
    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=64, amount_bins=8))
    sequences = pre.fit_transform(table)
    objectives = ObjectivesConfig(history=HistoryConfig(weight=1.0, lags=[1, 4], state_dim=3))
    torch.manual_seed(0)
    model = build_transactions_model(
        transactions_model_config(pre, EncoderConfig(hidden=16, mcc_dim=4, cat_dim=4, num_dim=4), objectives, sequences)
    ).eval()
    return model, table


def _assert_incremental_equals_full(model, table, path):
    full = features(model, table, progress=False)
    times = pd.to_datetime(table["ts"])
    cut = times.sort_values().iloc[int(len(times) * 0.6)]
    before, after = table[times < cut], table[times >= cut]
    store = StateStore.create(path, model)
    score_new(model, store, before)
    # the later rows in two batches (one event per client, then the rest) to exercise chaining
    order = after.assign(t=pd.to_datetime(after["ts"])).sort_values("t")
    first = order.groupby("client").head(1).drop(columns="t")
    rest = order.drop(index=first.index).drop(columns="t")
    got = pd.concat([score_new(model, store, first), score_new(model, store, rest)]).set_index("tx")
    want = full.set_index("tx").loc[got.index]  # both keep the input's key names ("tx", "client")
    cols = [c for c in got.columns if c not in ("client", "scored")]
    # not incremental (docs/transactions.md): order_score reads the whole window
    not_incremental = {"order_score"}
    assert not (not_incremental & set(got.columns))
    assert set(cols) == set(want.columns) - {"client", "scored"} - not_incremental
    pd.testing.assert_frame_equal(got[cols].astype("float64"), want[cols].astype("float64"), atol=1e-5, rtol=1e-5)
    assert store.clients() == len(set(table["client"]))
    return cols


def test_incremental_features_equal_the_full_recompute(setup, tmp_path):
    model, table = setup
    cols = _assert_incremental_equals_full(model, table, tmp_path / "state.sqlite")
    assert {"surprise_mcc", "state_00", "amount_z_l4", "gap_residual", "history_distance", "anomaly_score"} <= set(cols)


def test_incremental_equality_other_architectures(setup, tmp_path):
    """Summed field projections, a categorical target in the history heads, no gap head, no masked head."""
    model, table = setup
    spec = dict(model.spec.config)
    spec["encoder"] = {**spec["encoder"], "combine": "sum"}
    objectives = dict(spec["objectives"])
    objectives["history"] = {**objectives["history"], "categorical_targets": ["hour"], "lags": [2, 3]}
    objectives["order"] = {**objectives["order"], "gap_weight": 0.0}
    for masked in (1.0, 0.0):
        spec["objectives"] = {**objectives, "masked": {**objectives["masked"], "weight": masked}}
        torch.manual_seed(1)
        variant = build_transactions_model(spec).eval()
        cols = _assert_incremental_equals_full(variant, table, tmp_path / f"v{masked}.sqlite")
        assert "hour_nll_l3" in cols and "gap_residual" not in cols
        assert ("surprise_mcc" in cols) == bool(masked)


def test_store_refuses_another_model_out_of_order_rows_and_reports_duplicates(setup, tmp_path):
    model, table = setup
    path = tmp_path / "s.sqlite"
    store = StateStore.create(path, model)
    score_new(model, store, table.iloc[10:])
    with pytest.raises(ValueError, match="made by another model"):
        StateStore.open(path, random_init(model, 3))
    late = table[table["client"] == "c0"].iloc[:1]
    with pytest.raises(ValueError, match="client 'c0' has a new event .* older than its last stored event"):
        score_new(model, store, late)
    again = score_new(model, StateStore.open(path, model), table.iloc[-1:].assign(ts="2030-01-01 00:00:00"))
    assert again.attrs["report"]["duplicate_ids"] == [str(table["tx"].iloc[-1])]
    with pytest.raises(FileNotFoundError, match="no state store"):
        StateStore.open(tmp_path / "missing.sqlite", model)


def test_incremental_scoring_refuses_non_causal_encoders(setup, tmp_path):
    model, _ = setup
    spec = dict(model.spec.config)
    spec["encoder"] = {**spec["encoder"], "bidirectional": True}
    spec["objectives"] = {"masked": {"weight": 1.0}}
    with pytest.raises(ValueError, match="causal 1-layer unidirectional GRU"):
        StateStore.create(tmp_path / "x.sqlite", build_transactions_model(spec))


def test_cli_score_builds_then_continues_the_state(setup, tmp_path, capsys):
    from ssl_modal.cli import main
    from ssl_modal.core.checkpoint import atomic_save, make_checkpoint

    model, table = setup
    ckpt = atomic_save(make_checkpoint(model), tmp_path / "model.pt")
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    table.iloc[:-6].to_csv(old, index=False)
    table.iloc[-6:].to_csv(new, index=False)
    assert main(["score", str(ckpt), str(old), "--state", str(tmp_path / "st"), "-o", str(tmp_path / "a.parquet")]) == 0
    assert main(["score", str(ckpt), str(new), "--state", str(tmp_path / "st"), "-o", str(tmp_path / "b.parquet")]) == 0
    out = capsys.readouterr().out
    assert "wrote 6 rows" in out and "6 clients (0 new, 0 duplicate ids)" in out
    assert len(pd.read_parquet(tmp_path / "b.parquet")) == 6


def test_chunked_lockstep_equals_one_pass(setup, tmp_path):
    """Rounds of a few events and a few clients per batch (the memory bound) give the same features and state;
    an error in a helper process is raised in the caller."""
    model, table = setup
    cut = len(table) // 2
    a, b = StateStore.create(tmp_path / "a.sqlite", model), StateStore.create(tmp_path / "b.sqlite", model)
    parts = (table.iloc[:cut], table.iloc[cut:])
    one = [score_new(model, a, part) for part in parts]
    small = [score_new(model, b, part, chunk_events=3, max_events=7) for part in parts]
    for x, y in zip(one, small, strict=True):
        pd.testing.assert_frame_equal(x, y, atol=1e-6, rtol=1e-6)
    from ssl_modal.transactions.event_math import EventMath
    from ssl_modal.transactions.math_worker import MathWorker

    helper = MathWorker(EventMath(model))
    helper.send("features", "not", "inputs")
    with pytest.raises(TypeError, match="missing"):  # an error in the helper is raised here
        helper.result()
    process = helper.process
    helper.close()
    assert process.poll() == 0  # ended when closed


def test_row_encoder_matches_the_preprocessor_on_typed_columns(setup):
    """Text, categorical, float and datetime columns encode to the ids `TransactionPreprocessor.transform` gives."""
    from ssl_modal.transactions.rows import RowEncoder

    model, table = setup
    pre = model.preprocessor
    typed = table.assign(
        ts=pd.to_datetime(table["ts"]), mcc=table["mcc"].astype(float), type=table["type"].astype("category")
    )
    for frame in (table, typed, typed.assign(mcc=table["mcc"].astype("category"))):
        seq, rows = pre.transform(frame), RowEncoder(pre).encode(frame)
        want = {c: i for i, c in enumerate(seq.table.column("client_id").to_pylist())}
        for c, client in enumerate(rows.clients):
            part = slice(rows.starts[c], rows.starts[c + 1])
            for name, ids in rows.cat.items():
                assert ids[part].tolist() == seq.table.column(name)[want[client]].as_py(), (client, name)
            for name, values in rows.num.items():
                got = seq.table.column(name)[want[client]].as_py()
                assert values[part].tolist() == pytest.approx(got, abs=1e-6), (client, name)


def test_a_failed_batch_leaves_the_previous_state(setup, tmp_path, monkeypatch):
    """An error after the first writes of a batch rolls the whole batch back: the state scores as before."""
    model, table = setup
    store = StateStore.create(tmp_path / "s.sqlite", model)
    score_new(model, store, table.iloc[:-12])
    before = store.read(sorted(set(table["client"])))
    original = StateStore.write

    def crash(self, *args):
        original(self, *args)
        raise RuntimeError("power cut")

    monkeypatch.setattr(StateStore, "write", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        score_new(model, store, table.iloc[-12:])
    monkeypatch.undo()
    after = StateStore.open(tmp_path / "s.sqlite", model).read(sorted(set(table["client"])))
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)
    again = score_new(model, store, table.iloc[-12:])
    assert again.attrs["report"]["duplicate_ids"] == [] and again["scored"].all()


def test_weights_changed_in_place_are_another_model(setup, tmp_path):
    model, table = setup
    model = random_init(model, 5)
    store = StateStore.create(tmp_path / "w.sqlite", model)
    score_new(model, store, table.iloc[:20])
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="made by another model"):
        score_new(model, store, table.iloc[20:30])


def test_event_math_gru_and_gelu_match_torch_small_and_large(setup):
    """The numpy GRU steps (scipy below 4,096 elements, torch kernels above) equal nn.GRU; GELU equals nn.GELU."""
    from ssl_modal.transactions.event_math import EventMath, _gelu

    model, _ = setup
    math, rnn = EventMath(model), model.encoder.rnn
    rng = np.random.default_rng(0)
    for B, T in ((3, 4), (80, 3)):  # 2 x B x 2H gate values per step: 192, then 5,120
        x = rng.standard_normal((B * T, rnn.input_size)).astype(np.float32)
        h0 = rng.standard_normal((B, rnn.hidden_size)).astype(np.float32)
        x_tm = x.reshape(B, T, -1).transpose(1, 0, 2).reshape(B * T, -1)  # time-major: step t is rows tB..
        both, before = math.gru(x_tm @ math.w_in + math.b_in, h0, list(range(0, B * T + 1, B)), np.zeros_like(h0))
        got = both[0].reshape(T, B, -1).transpose(1, 0, 2)
        with torch.no_grad():
            want, _ = rnn(torch.from_numpy(x.reshape(B, T, -1)), torch.from_numpy(h0)[None])
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
        np.testing.assert_allclose(before[-B:], want.numpy()[:, :-1].sum(1), atol=1e-5)  # earlier states summed
    for n in (10, 10_000):
        x = rng.standard_normal(n).astype(np.float32) * 3
        np.testing.assert_allclose(_gelu(x), torch.nn.functional.gelu(torch.from_numpy(x)).numpy(), atol=1e-6)


def test_anomaly_score_24h_from_the_stored_day_window(setup, tmp_path):
    """Bursts (an event every 3 h) split across calls: the 24 h mean reads the stored day ring and equals
    `features`; a client with more than DAY_EVENTS events in 24 h is reported (its ring is bounded)."""
    from ssl_modal.transactions.state_store import DAY_EVENTS

    model, table = setup
    burst = table.copy()
    start = pd.Timestamp("2024-03-01")
    step = burst.groupby("client").cumcount().to_numpy()
    burst["ts"] = [str(start + pd.Timedelta(hours=3 * int(i) + k % 2)) for k, i in enumerate(step)]
    full = features(model, burst, progress=False).set_index("tx")
    store = StateStore.create(tmp_path / "d.sqlite", model)
    parts = [burst[step < 13], burst[(step >= 13) & (step < 14)], burst[step >= 14]]  # cut inside 24 h windows
    got = pd.concat([score_new(model, store, p) for p in parts]).set_index("tx")
    assert got["anomaly_score_24h"].notna().all()
    np.testing.assert_allclose(got["anomaly_score_24h"], full.loc[got.index, "anomaly_score_24h"], atol=1e-5, rtol=1e-5)
    # the mean really covers several events: not the event's own score
    assert (got["anomaly_score_24h"] - got["anomaly_score"]).abs().max() > 1e-3
    dense = burst[burst["client"] == "c0"].iloc[:1].copy()
    many = pd.concat([dense.assign(tx=f"d{i}", ts=str(start + pd.Timedelta(days=30, minutes=i))) for i in range(70)])
    assert score_new(model, store, many.iloc[:40]).attrs["report"]["day_window_full"] == 0
    assert score_new(model, store, many.iloc[40:]).attrs["report"]["day_window_full"] == 1
    assert 70 > DAY_EVENTS


def test_records_score_like_the_dataframe(setup, tmp_path):
    """A dict or a list of dicts (JSON-like values: ISO times as text, numbers, text) gives the features and
    state updates of the same rows as a DataFrame."""
    model, table = setup
    a, b = StateStore.create(tmp_path / "a.sqlite", model), StateStore.create(tmp_path / "b.sqlite", model)
    score_new(model, a, table.iloc[:-8])
    score_new(model, b, table.iloc[:-8])
    records = table.iloc[-8:].to_dict("records")
    want = pd.concat([score_new(model, a, table.iloc[-8:-7]), score_new(model, a, table.iloc[-7:])])
    got = pd.concat([score_new(model, b, records[0]), score_new(model, b, records[1:])])
    cols = [c for c in want.columns if c not in ("tx", "client")]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
    assert got["tx"].tolist() == want["tx"].tolist() and got["client"].tolist() == want["client"].tolist()
    bad = dict(records[0], ts="yesterday-ish", tx="new1")
    with pytest.raises(Exception, match="ts"):
        score_new(model, b, [bad])


def test_cached_rows_are_dropped_when_another_connection_commits(setup, tmp_path):
    """Two stores (connections) on one file take turns on the same clients: each call sees the other's
    last commit (PRAGMA data_version empties the cache), so the features equal one store's."""
    model, table = setup
    table = table.iloc[np.argsort(pd.to_datetime(table["ts"]).to_numpy(), kind="stable")]  # every part: all clients
    parts = np.array_split(np.arange(len(table)), 5)
    one = StateStore.create(tmp_path / "one.sqlite", model)
    want = [score_new(model, one, table.iloc[p]) for p in parts]
    a = StateStore.create(tmp_path / "two.sqlite", model)
    b = StateStore.open(tmp_path / "two.sqlite", model)
    got = [score_new(model, (a, b)[i % 2], table.iloc[p]) for i, p in enumerate(parts)]
    for x, y in zip(want, got, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert a._cache and b._cache  # both cached their own writes
