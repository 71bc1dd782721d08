import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs

from ssl_modal.core.evaluate import C_GRID, ProbeResult, ProbeTable, probe


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=400, n_features=16, centers=4, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


def test_separable_blobs_score_near_one(blobs):
    X, y = blobs
    r = probe(X, y, name="blobs")
    assert isinstance(r, ProbeResult)
    assert r.linear_acc > 0.98 and r.knn_acc > 0.98
    assert r.linear_f1 > 0.98 and r.knn_f1 > 0.98
    assert r.n_classes == 4 and r.folds == 5
    assert (r.n_train, r.n_test) == (320, 80)


def test_random_labels_score_near_chance():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(600, 32)), rng.integers(0, 4, size=600)
    r = probe(X, y)
    assert 0.15 < r.linear_acc < 0.37
    assert 0.15 < r.knn_acc < 0.37
    assert r.linear_acc_std > 0  # CV spreads over folds


def test_given_split_vs_cv(blobs):
    X, y = blobs
    tr, te = np.arange(300), np.arange(300, 400)
    r = probe(X, y, train_idx=tr, test_idx=te)
    assert (r.n_train, r.n_test, r.folds) == (300, 100, 1)
    assert r.linear_acc_std == 0.0 and r.knn_acc_std == 0.0
    cv3 = probe(X, y, cv=3)
    assert cv3.folds == 3 and cv3.n_test in (133, 134)
    # same seed -> same folds -> same scores; string labels work too
    again = probe(X, np.array(["abcd"[i] for i in y]), cv=3)
    assert again.linear_acc == pytest.approx(cv3.linear_acc)


def test_knn_is_distance_weighted():
    # Two near-duplicates of class 1 beside the query outvote three distant class-0 points.
    X_train = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.1, 1.0], [0.05, 1.0]])
    y = np.array([1, 1, 0, 0, 0])
    X = np.vstack([X_train, [[1.0, 0.005]], [[0.02, 1.0]]])
    y_all = np.concatenate([y, [1, 0]])
    r = probe(X, y_all, train_idx=np.arange(5), test_idx=np.array([5, 6]), k=5)
    assert r.knn_acc == 1.0  # uniform weights with k=5 would predict class 0 for the first query
    assert r.k == 5


def test_k_capped_at_training_size_with_warning(blobs):
    X, y = blobs
    with pytest.warns(UserWarning, match="k=50 exceeds the 40 training examples"):
        r = probe(X, y, train_idx=np.arange(0, 400, 10), test_idx=np.arange(1, 400, 10), k=50)
    assert r.k == 40


def test_sparse_features(blobs):
    X, y = blobs
    Xs = sp.csr_matrix(np.maximum(X - X.mean(0), 0))  # nonnegative, roughly half zeros
    assert Xs.nnz < Xs.shape[0] * Xs.shape[1]
    r = probe(Xs, y, cv=3)
    assert r.linear_acc > 0.9 and r.knn_acc > 0.9


def test_error_length_mismatch(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="features has 400 rows but labels has 399"):
        probe(X, y[:-1])


def test_error_small_class(blobs):
    X, y = blobs
    y = y.copy()
    y[:3] = 7
    with pytest.raises(ValueError, match=r"at least cv=5 examples .* class 7 has 3"):
        probe(X, y, cv=5)


def test_error_nan_rows(blobs):
    X, y = blobs
    X = X.copy()
    X[[3, 10], 0] = np.nan
    X[10, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in 2 of 400 rows \(row indices 3, 10\)"):
        probe(X, y)
    Xs = sp.csr_matrix(np.abs(blobs[0]))
    Xs.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 of 400 rows"):
        probe(Xs, y)


def test_error_missing_labels(blobs):
    X, y = blobs
    labels = np.array(["a", "b"] * 200, dtype=object)
    labels[[5, 9]] = None
    with pytest.raises(ValueError, match=r"labels are missing \(None/NaN\) in 2 rows \(row indices 5, 9\)"):
        probe(X, labels)


def test_error_single_class(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="at least 2 classes, found only class 'a'"):
        probe(X, np.array(["a"] * len(X)))


def test_error_half_split_and_bad_index(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="pass both train_idx and test_idx"):
        probe(X, y, train_idx=np.arange(10))
    with pytest.raises(ValueError, match=r"split indices must be in \[0, 400\), found 400"):
        probe(X, y, train_idx=np.arange(300), test_idx=np.arange(300, 401))


def test_probe_table_outputs(blobs, tmp_path):
    X, y = blobs
    cv = probe(X, y, cv=3, name="cv probe")
    fixed = probe(X, y, train_idx=np.arange(300), test_idx=np.arange(300, 400), name="split")
    table = ProbeTable([cv, fixed])
    text = str(table).splitlines()
    assert text[0].split()[:3] == ["name", "linear", "acc"]
    assert text[2].startswith("cv probe") and "±" in text[2]
    assert text[3].startswith("split") and "±" not in text[3] and text[3].rstrip().endswith("100")
    assert len({len(line) for line in text[:2]}) == 1  # header and rule have the same width
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| name | linear acc") and md[1].startswith("|:---|")
    assert len(md) == 4 and md[3].startswith("| split | ")
    path = table.to_json(tmp_path / "sub" / "probe.json")
    data = json.loads(path.read_text())
    assert [r["name"] for r in data["results"]] == ["cv probe", "split"]
    assert data["results"][1]["n_test"] == 100 == table.to_dict()["results"][1]["n_test"]


def test_linear_c_chosen_on_training_examples_only():
    # 60 training examples in 200 dimensions, each weakly informative: CV on the training part prefers
    # strong regularisation (close to an average of all dimensions), C = 1 overfits.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    X = rng.normal(size=(120, 200)) + 0.25 * (2 * y[:, None] - 1)
    tr, te = np.arange(0, 120, 2), np.arange(1, 120, 2)
    r = probe(X, y, train_idx=tr, test_idx=te, C=C_GRID)
    assert r.linear_c <= 0.001
    fixed = probe(X, y, train_idx=tr, test_idx=te, C=1.0)
    assert fixed.linear_c == 1.0 and r.linear_acc >= fixed.linear_acc
    # the test labels play no part in the choice: flipping them leaves C and the kNN votes' inputs alone
    flipped = probe(X, np.where(np.isin(np.arange(120), te), 1 - y, y), train_idx=tr, test_idx=te, C=C_GRID)
    assert flipped.linear_c == r.linear_c
    assert flipped.linear_acc == pytest.approx(1 - r.linear_acc)


def test_linear_c_grid_checked_and_tiny_classes_fall_back(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="C must be a positive number"):
        probe(X, y, C=[])
    with pytest.raises(ValueError, match="C must be a positive number"):
        probe(X, y, C=-1.0)
    # one example of class 3 in the training part: no stratified inner CV, C = 1.0
    tr = np.concatenate([np.flatnonzero(y != 3)[:200], np.flatnonzero(y == 3)[:1]])
    te = np.setdiff1d(np.arange(len(y)), tr)
    assert probe(X, y, train_idx=tr, test_idx=te, C=C_GRID).linear_c == 1.0
    assert probe(X, y, train_idx=tr, test_idx=te).linear_c == 1.0  # the default: C = 1, no CV
