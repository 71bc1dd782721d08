"""Skip-gram code embeddings: pair extraction against a naive loop, and neighbours that co-occur."""

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from ssl_modal.transactions.mcc import iso18245_range, mcc_embeddings, nearest_mccs, plot_mcc_map
from ssl_modal.transactions.skipgram import cooccurrence_pairs, train_skipgram


def windows_set(windows):
    return SimpleNamespace(table=pa.table({"mcc": pa.array(windows, type=pa.list_(pa.int32()))}))


def test_pairs_match_a_naive_loop_and_skip_reserved_ids_and_window_edges():
    windows = [[3, 4, 2, 5], [6, 7], [8]]
    ids = np.concatenate([np.asarray(w) for w in windows])
    win = np.repeat(np.arange(3), [len(w) for w in windows])
    got = sorted(map(tuple, cooccurrence_pairs(ids, win, 2).tolist()))
    naive = sorted(
        (w[i], w[j])
        for w in windows
        for i in range(len(w))
        for j in range(len(w))
        if i != j and abs(i - j) <= 2 and w[i] >= 3 and w[j] >= 3
    )
    assert got == naive


def test_codes_that_co_occur_become_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    groups = [[3, 4, 5], [6, 7, 8], [9, 10, 11]]
    windows = [rng.choice(groups[i % 3], 12).tolist() for i in range(300)]
    vocab = ["PAD", "MASK", "UNK"] + [str(5000 + i) for i in range(3, 12)]
    emb = train_skipgram(windows_set(windows), "mcc", vocab, dim=8, window=3, epochs=3, seed=0)
    table = mcc_embeddings(emb)
    assert len(table) == 9 and set(table.columns) == {"code", "count", "vector"}
    assert table["count"].sum() == 300 * 12
    near = nearest_mccs(emb, "5003", k=2)["code"].tolist()
    assert sorted(near) == ["5004", "5005"]
    everyone = nearest_mccs(emb, "5003", k=100)["code"].tolist()
    assert len(everyone) == 8 and "5003" not in everyone  # never the code itself, whatever k
    png = plot_mcc_map(table, tmp_path / "map.png", "test map")
    assert png.stat().st_size > 1000


def test_max_pairs_caps_each_epoch_and_still_finds_neighbours():
    rng = np.random.default_rng(0)
    groups = [[3, 4, 5], [6, 7, 8], [9, 10, 11]]
    windows = [rng.choice(groups[i % 3], 12).tolist() for i in range(300)]  # 19,800 pairs
    vocab = ["PAD", "MASK", "UNK"] + [str(5000 + i) for i in range(3, 12)]
    kw = {"dim": 8, "window": 3, "epochs": 3, "seed": 0, "min_steps": 1}
    every = train_skipgram(windows_set(windows), "mcc", vocab, max_pairs=None, **kw)
    above = train_skipgram(windows_set(windows), "mcc", vocab, max_pairs=10**9, **kw)
    np.testing.assert_array_equal(every.vectors, above.vectors)  # a cap above the pair count changes nothing
    capped = train_skipgram(windows_set(windows), "mcc", vocab, max_pairs=2_000, **kw)
    assert not np.array_equal(capped.vectors, every.vectors)
    assert sorted(nearest_mccs(capped, "5003", k=2)["code"]) == ["5004", "5005"]
    with pytest.raises(ValueError, match="max_pairs: expected >= 1 or None, found 0"):
        train_skipgram(windows_set(windows), "mcc", vocab, max_pairs=0)


def test_unknown_code_and_field_messages():
    emb = train_skipgram(windows_set([[3, 4, 3, 4]] * 5), "mcc", ["P", "M", "U", "a", "b"], dim=4, epochs=1)
    with pytest.raises(KeyError, match="code 'zzz' is not in the 'mcc' vocabulary"):
        nearest_mccs(emb, "zzz")
    with pytest.raises(KeyError, match="no field 'type'"):
        train_skipgram(windows_set([[3, 4]]), "type")


def test_iso18245_ranges():
    assert iso18245_range(5411) == "retail outlets"
    assert iso18245_range("3000") == "airlines"
    assert iso18245_range(4829) == "utility services"
    assert iso18245_range(5812) == "miscellaneous stores"
    assert iso18245_range("grocery_pos") == "not an ISO MCC"
