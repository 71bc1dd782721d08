"""A `ShardedStore` (shards scored end to end in helper processes) gives the features of a one-file store and of
`features` on the whole table; a crash between the shards' commits leaves a state that a re-sent batch
completes exactly; errors before the commits apply nothing anywhere."""

import os
import signal

import numpy as np
import pandas as pd
import pytest

from ssl_modal.transactions.features import features
from ssl_modal.transactions.incremental import ShardedStore, StateStore, score_new
from ssl_modal.transactions.model import random_init
from ssl_modal.transactions.sharded_state import ShardServer
from tests.transactions.test_incremental import setup  # noqa: F401 - the module fixture


def _in_time_order(table):
    t = pd.to_datetime(table["ts"]).to_numpy()
    return table.iloc[np.argsort(t, kind="stable")]


def _states(store: ShardedStore, clients: list) -> dict:
    """client -> (events, last time, state blob parts) read from the shard files."""
    out = {}
    for k, f in enumerate(store.files):
        st = StateStore(f, None, shard=f"{k}/{store.shards}", identity=store.identity)
        mine = [c for c in clients if int(store.shard_of([c])[0]) == k]
        for c, *values in zip(mine, *st.read(mine), strict=True):
            out[c] = values
        st.close()
    return out


def _assert_features_equal(got, want):
    cols = [c for c in got.columns if c not in ("tx", "client", "scored")]
    pd.testing.assert_frame_equal(
        got.set_index("tx")[cols].astype("float64"),
        want.set_index("tx").loc[got["tx"], cols].astype("float64"),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_features_equal_the_full_recompute(setup, tmp_path, shards):  # noqa: F811
    model, table = setup
    table = _in_time_order(table)
    full = features(model, table, progress=False)
    store = ShardedStore.create(tmp_path / "st", model, shards=shards)
    used = set(store.shard_of(sorted(set(table["client"]))).tolist())
    assert len(used) == 2 and 0 in used  # 3 shards: one holds no client of this table
    cut = int(len(table) * 0.6)
    score_new(model, store, table.iloc[:cut])
    parts = [table.iloc[cut : cut + 1], table.iloc[cut + 1 : cut + 9], table.iloc[cut + 9 :]]  # one shard, then all
    got = pd.concat([score_new(model, store, p) for p in parts])
    assert got["scored"].all() and len(got) == len(table) - cut
    _assert_features_equal(got, full)
    assert store.clients() == len(set(table["client"]))
    store.close()
    again = ShardedStore.open(tmp_path / "st", model)  # reopened: the shard count comes from the files
    assert again.shards == shards and again.clients() == len(set(table["client"]))
    again.close()


def test_crash_between_shard_commits_then_resend(setup, tmp_path, monkeypatch):  # noqa: F811
    """Shard 1 (a helper) commits, shard 0 (this process) fails to: the re-sent batch applies to shard 0 only,
    its shard-1 rows come back unscored, and everything after equals `features` and a one-file store."""
    model, table = setup
    table = _in_time_order(table)
    full = features(model, table, progress=False)
    store = ShardedStore.create(tmp_path / "st", model, shards=2)
    one = StateStore.create(tmp_path / "one.sqlite", model)
    a, b = int(len(table) * 0.5), int(len(table) * 0.75)
    for s in (store, one):
        score_new(model, s, table.iloc[:a])
    batch = table.iloc[a:b]
    shard = store.shard_of(batch["client"].astype(str).tolist())
    assert set(shard.tolist()) == {0, 1}
    original = ShardServer.commit

    def crash(self):
        if self.shard.startswith("0/") and self._tx is not None:
            raise OSError("power cut in shard 0")
        original(self)

    monkeypatch.setattr(ShardServer, "commit", crash)  # this process only: the helper commits
    with pytest.raises(OSError, match="power cut"):
        score_new(model, store, batch)
    store._servers[0].abort()  # what the crash would have lost: shard 0's open transaction
    monkeypatch.undo()
    resent = score_new(model, store, batch)
    assert resent["scored"].tolist() == (shard == 0).tolist()
    assert resent.attrs["report"]["already_applied"] == int((shard == 1).sum())
    _assert_features_equal(resent[resent["scored"]], full)
    with pytest.raises(ValueError, match="already holds this batch"):
        score_new(model, store, batch)
    score_new(model, one, batch)
    rest = table.iloc[b:]
    _assert_features_equal(score_new(model, store, rest), full)
    want = score_new(model, one, rest)
    clients = sorted(set(table["client"].astype(str)))
    got_states, want_states = (
        _states(store, clients),
        dict(zip(clients, zip(*one.read(clients), strict=True), strict=True)),
    )
    for c in clients:
        for x, y in zip(got_states[c], want_states[c], strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5)  # fp32, other batch shapes
    assert len(want) == len(rest)
    store.close()


def test_an_error_in_one_shard_applies_nothing_anywhere(setup, tmp_path):  # noqa: F811
    model, table = setup
    table = _in_time_order(table)
    store = ShardedStore.create(tmp_path / "st", model, shards=2)
    score_new(model, store, table.iloc[:-10])
    clients = sorted(set(table["client"].astype(str)))
    before = _states(store, clients)
    late_client = next(c for c in clients if int(store.shard_of([c])[0]) == 1)  # refused in the helper
    late = table[table["client"].astype(str) == late_client].iloc[:1]
    with pytest.raises(ValueError, match=f"client '{late_client}' has a new event .* older"):
        score_new(model, store, pd.concat([table.iloc[-10:], late]))
    after = _states(store, clients)
    for c in clients:
        for x, y in zip(before[c], after[c], strict=True):
            np.testing.assert_array_equal(x, y)
    assert score_new(model, store, table.iloc[-10:])["scored"].all()  # the store still works
    store.close()


def test_a_killed_helper_is_restarted_and_the_state_kept(setup, tmp_path):  # noqa: F811
    model, table = setup
    table = _in_time_order(table)
    full = features(model, table, progress=False)
    store = ShardedStore.create(tmp_path / "st", model, shards=2)
    score_new(model, store, table.iloc[:-20])
    helper = store._servers[1].process
    os.kill(helper.pid, signal.SIGKILL)
    helper.wait()
    got = score_new(model, store, table.iloc[-20:])
    assert store._servers[1].process.pid != helper.pid
    _assert_features_equal(got, full)
    store.close()


def test_sharded_store_refuses_other_models_counts_and_files(setup, tmp_path):  # noqa: F811
    model, table = setup
    store = ShardedStore.create(tmp_path / "st", model, shards=2)
    score_new(model, store, table.iloc[:20])
    store.close()
    with pytest.raises(ValueError, match="made by another model"):
        ShardedStore.open(tmp_path / "st", random_init(model, 3))
    with pytest.raises(ValueError, match="a store of 2 shards, 3 requested"):
        ShardedStore.create(tmp_path / "st", model, shards=3)
    with pytest.raises(ValueError, match="shard 1/2 of a sharded store"):
        StateStore.open(tmp_path / "st" / "shard-1-of-2.sqlite", model)
    with pytest.raises(FileNotFoundError, match="no sharded state"):
        ShardedStore.open(tmp_path / "nothing", model)


def test_cli_score_with_shards(setup, tmp_path, capsys):  # noqa: F811
    from ssl_modal.cli import main
    from ssl_modal.core.checkpoint import atomic_save, make_checkpoint

    model, table = setup
    ckpt = atomic_save(make_checkpoint(model), tmp_path / "model.pt")
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    table.iloc[:-6].to_csv(old, index=False)
    table.iloc[-6:].to_csv(new, index=False)
    state, out = str(tmp_path / "st"), str(tmp_path / "b.parquet")
    assert (
        main(["score", str(ckpt), str(old), "--state", state, "--shards", "2", "-o", str(tmp_path / "a.parquet")]) == 0
    )
    assert main(["score", str(ckpt), str(new), "--state", state, "-o", out]) == 0  # the shard count from the files
    printed = capsys.readouterr().out
    assert "wrote 6 rows" in printed and "2 shards (0 rows already applied)" in printed
    assert sorted(p.name for p in (tmp_path / "st").glob("*.sqlite")) == ["shard-0-of-2.sqlite", "shard-1-of-2.sqlite"]
    assert pd.read_parquet(out)["scored"].all()


def test_start_opens_every_shard_before_the_first_call(setup, tmp_path):  # noqa: F811
    model, table = setup
    store = ShardedStore.create(tmp_path / "st", model, shards=3)
    store.start(model)
    helpers = [s.process.pid for s in store._servers[1:]]
    assert len(helpers) == 2 and all(s.process.poll() is None for s in store._servers[1:])
    assert score_new(model, store, table)["scored"].all()
    assert [s.process.pid for s in store._servers[1:]] == helpers  # the same helpers scored
    store.close()
