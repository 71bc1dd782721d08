"""Frozen-embedding evaluation shared by every domain.

`probe(features, labels)` fits a linear probe (standardise + logistic regression; C = 1 by default, or
chosen from a grid such as `C_GRID` by cross-validation on the training examples only) and a
distance-weighted cosine kNN on the same split, and reports accuracy and macro-F1 for both.
Pass `train_idx`/`test_idx` for a fixed split, otherwise stratified k-fold CV is used and
every metric is a mean with its standard deviation over folds. `ProbeTable` prints results.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass
class ProbeResult:
    """Scores of one probe. `*_std` is the std over CV folds (0.0 for a given split).

    With CV, `n_train`/`n_test` are the mean fold sizes; `folds` is 1 for a given split.
    `k` is the number of neighbours actually used (capped at the training-set size).
    `linear_c` is the logistic regression's C (chosen on the training examples; with CV, the most common
    choice over folds); None where no logistic regression was fitted (e.g. a fine-tuned head).
    """

    name: str
    linear_acc: float
    linear_f1: float
    knn_acc: float
    knn_f1: float
    linear_acc_std: float
    linear_f1_std: float
    knn_acc_std: float
    knn_f1_std: float
    n_train: int
    n_test: int
    n_classes: int
    folds: int
    k: int
    linear_c: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _first(items: Iterable, n: int = 5) -> str:
    items = list(items)
    head = ", ".join(str(x) for x in items[:n])
    return head + (", ..." if len(items) > n else "")


def _label(value) -> str:
    """A class label as the user wrote it ('a', 7), not numpy's repr (np.str_('a'))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_inputs(features, labels) -> tuple[Any, np.ndarray]:
    """Validate shapes and values; return (features as ndarray/CSR, labels as 1-D array)."""
    if sp.issparse(features):
        X = sp.csr_matrix(features)
    else:
        X = np.asarray(features)
        if X.ndim != 2:
            raise ValueError(f"probe: features must be 2-D (n_examples, dim), found shape {X.shape}")
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"probe: features must be numeric, found dtype {X.dtype}")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"probe: labels must be 1-D, found shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"probe: features has {X.shape[0]} rows but labels has {y.shape[0]}; "
            "they must describe the same examples in the same order"
        )
    missing = np.flatnonzero(pd.isna(y))
    if missing.size:
        raise ValueError(
            f"probe: labels are missing (None/NaN) in {missing.size} rows "
            f"(row indices {_first(missing.tolist())}); drop those examples first"
        )
    if sp.issparse(X):
        bad_vals = ~np.isfinite(X.data)
        bad_rows = np.unique(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[bad_vals])
    else:
        bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"probe: features contain NaN or inf in {bad_rows.size} of {X.shape[0]} rows "
            f"(row indices {_first(bad_rows.tolist())}); drop or fix those rows before probing"
        )
    classes = np.unique(y)
    if classes.size < 2:
        found = f"only class {_label(classes[0])}" if classes.size else "no labels"
        raise ValueError(f"probe: labels need at least 2 classes, found {found}")
    return X, y


def _splits(y: np.ndarray, train_idx, test_idx, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if (train_idx is None) != (test_idx is None):
        raise ValueError("probe: pass both train_idx and test_idx, or neither (to use cross-validation)")
    if train_idx is not None:
        tr, te = np.asarray(train_idx), np.asarray(test_idx)
        if tr.dtype == bool or te.dtype == bool:
            raise ValueError(
                "probe: train_idx/test_idx must be integer indices, not boolean masks (use np.flatnonzero(mask))"
            )
        if tr.size == 0 or te.size == 0:
            raise ValueError(f"probe: empty split (train {tr.size} examples, test {te.size} examples)")
        n = y.shape[0]
        both = np.concatenate([tr, te])
        if both.min() < 0 or both.max() >= n:
            bad = both[(both < 0) | (both >= n)]
            raise ValueError(f"probe: split indices must be in [0, {n}), found {_first(bad.tolist())}")
        if np.unique(y[tr]).size < 2:
            raise ValueError(f"probe: the training split has a single class ({_label(y[tr][0])}); need at least 2")
        return [(tr, te)]
    if cv < 2:
        raise ValueError(f"probe: cv must be >= 2 folds, found {cv} (or pass train_idx/test_idx)")
    classes, counts = np.unique(y, return_counts=True)
    small = counts < cv
    if small.any():
        detail = ", ".join(f"class {_label(c)} has {n}" for c, n in zip(classes[small], counts[small], strict=True))
        raise ValueError(
            f"probe: every class needs at least cv={cv} examples for stratified {cv}-fold CV, but {detail}; "
            "lower cv, drop those classes, or pass train_idx/test_idx"
        )
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(y.shape[0]), y))


C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0)  # logistic-regression C tried by the inner cross-validation
INNER_FOLDS = 3


def _linear_probe(X, y: np.ndarray, C: float | Sequence[float], seed: int, sparse: bool):
    """Standardise + logistic regression fitted on (X, y), C chosen by stratified `INNER_FOLDS`-fold CV
    accuracy on (X, y) alone (the first of the best on a tie). One C, or a training set with a class of
    fewer than 2 examples, fits that C (1.0, sklearn's default, for the latter) without CV."""
    pipe = make_pipeline(StandardScaler(with_mean=not sparse), LogisticRegression(max_iter=1000, random_state=seed))
    grid = [float(c) for c in np.atleast_1d(np.asarray(C, dtype=float))]
    if not grid or min(grid) <= 0:
        raise ValueError(f"probe: C must be a positive number or a non-empty list of them, found {C!r}")
    folds = min(INNER_FOLDS, int(np.unique(y, return_counts=True)[1].min()))
    if len(grid) == 1 or folds < 2:
        pipe.set_params(logisticregression__C=grid[0] if len(grid) == 1 else 1.0)
        return pipe.fit(X, y)
    inner = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, {"logisticregression__C": grid}, cv=inner, scoring="accuracy")
    return search.fit(X, y).best_estimator_


def probe(
    features,
    labels: Sequence | np.ndarray,
    *,
    train_idx=None,
    test_idx=None,
    cv: int = 5,
    k: int = 20,
    seed: int = 0,
    name: str = "",
    C: float | Sequence[float] = 1.0,
) -> ProbeResult:
    """Linear-probe and weighted-kNN accuracy / macro-F1 of frozen `features` for `labels`.

    features: (N, D) numpy array or scipy sparse matrix. labels: N class labels (any hashable).
    train_idx/test_idx: integer indices of a fixed split; without them, StratifiedKFold(cv).
    k: neighbours for kNN (distance-weighted, cosine). seed: fold shuffling and solver seed.
    C: the logistic regression's inverse regularisation (default 1.0, sklearn's), or a grid of them
    (e.g. `C_GRID`): then chosen per split by 3-fold CV on that split's training examples only (never on
    its test examples). A grid costs about (folds x grid size + 1) fits; the text recipe uses `C_GRID`.
    """
    X, y = _check_inputs(features, labels)
    splits = _splits(y, train_idx, test_idx, cv, seed)
    sparse = sp.issparse(X)
    scores: dict[str, list[float]] = {"linear_acc": [], "linear_f1": [], "knn_acc": [], "knn_f1": []}
    sizes, k_used, chosen = [], k, []
    for tr, te in splits:
        linear = _linear_probe(X[tr], y[tr], C, seed, sparse)
        chosen.append(float(linear[-1].C))
        k_used = min(k, len(tr))
        if k_used < k:
            warnings.warn(f"probe: k={k} exceeds the {len(tr)} training examples; using k={k_used}", stacklevel=2)
        knn = KNeighborsClassifier(n_neighbors=k_used, weights="distance", metric="cosine", algorithm="brute")
        knn.fit(X[tr], y[tr])
        for key, model in (("linear", linear), ("knn", knn)):
            pred = model.predict(X[te])
            scores[f"{key}_acc"].append(accuracy_score(y[te], pred))
            scores[f"{key}_f1"].append(f1_score(y[te], pred, average="macro", zero_division=0))
        sizes.append((len(tr), len(te)))
    mean = {key: float(np.mean(v)) for key, v in scores.items()}
    std = {f"{key}_std": float(np.std(v)) for key, v in scores.items()}
    n_train, n_test = (int(round(x)) for x in np.mean(sizes, axis=0))
    return ProbeResult(
        name=name,
        **mean,
        **std,
        n_train=n_train,
        n_test=n_test,
        n_classes=int(np.unique(y).size),
        folds=len(splits),
        k=k_used,
        linear_c=max(set(chosen), key=chosen.count),
    )


_COLUMNS = ("name", "linear acc", "linear F1", "kNN acc", "kNN F1", "n_train", "n_test")


class ProbeTable:
    """A list of ProbeResults that prints as an aligned table (str) or Markdown."""

    def __init__(self, results: Iterable[ProbeResult] = ()):
        self.results = list(results)

    def append(self, result: ProbeResult) -> None:
        self.results.append(result)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)

    @staticmethod
    def _score(mean: float, std: float, folds: int) -> str:
        return f"{mean:.3f} ± {std:.3f}" if folds > 1 else f"{mean:.3f}"

    def rows(self) -> list[list[str]]:
        """The table body as strings, one list per result (column order as in the header)."""
        out = []
        for i, r in enumerate(self.results):
            out.append(
                [
                    r.name or f"probe {i + 1}",
                    self._score(r.linear_acc, r.linear_acc_std, r.folds),
                    self._score(r.linear_f1, r.linear_f1_std, r.folds),
                    self._score(r.knn_acc, r.knn_acc_std, r.folds),
                    self._score(r.knn_f1, r.knn_f1_std, r.folds),
                    str(r.n_train),
                    str(r.n_test),
                ]
            )
        return out

    def __str__(self) -> str:
        rows = [list(_COLUMNS)] + self.rows()
        widths = [max(len(row[j]) for row in rows) for j in range(len(_COLUMNS))]

        def fmt(row):  # name left-aligned, numbers right-aligned
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            return "  ".join(cells).rstrip()

        lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
        if any(r.folds > 1 for r in self.results):
            lines.append("(mean ± std over cross-validation folds; n_train/n_test per fold)")
        return "\n".join(lines)

    __repr__ = __str__

    def to_markdown(self) -> str:
        head = "| " + " | ".join(_COLUMNS) + " |"
        align = "|" + "|".join([":---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|"
        body = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows()]
        return "\n".join([head, align] + body)

    def to_dict(self) -> dict:
        return {"results": [r.to_dict() for r in self.results]}

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def probe_split(
    train_features,
    train_labels: Sequence | np.ndarray,
    test_features,
    test_labels: Sequence | np.ndarray,
    *,
    k: int = 20,
    seed: int = 0,
    name: str = "",
    C: float | Sequence[float] = 1.0,
) -> ProbeResult:
    """`probe` trained on one set and tested on another (e.g. eval.train and eval.test manifests)."""
    if sp.issparse(train_features) or sp.issparse(test_features):
        X = sp.vstack([sp.csr_matrix(train_features), sp.csr_matrix(test_features)]).tocsr()
    else:
        X = np.concatenate([np.asarray(train_features), np.asarray(test_features)])
    y = np.concatenate([np.asarray(train_labels, dtype=object), np.asarray(test_labels, dtype=object)])
    n_train = len(train_labels)
    try:
        y = y.astype(np.asarray(train_labels).dtype)
    except (TypeError, ValueError):
        pass
    return probe(
        X, y, train_idx=np.arange(n_train), test_idx=np.arange(n_train, len(y)), k=k, seed=seed, name=name, C=C
    )
