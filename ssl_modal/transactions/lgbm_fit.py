"""LightGBM for the fraud tables: one protocol for every row, its rounds chosen on the training clients only.

`fit_predict` holds out a client-disjoint `valid_fraction` of the TRAINING rows' clients (never a row outside
`fit`; clients with and without fraud drawn separately), boosts on the rest with early stopping on the held-out
clients' `metric` (log loss by default; `patience` rounds, at most `max_rounds`), then refits on all training rows
for the best number of rounds (`refit: true`; the rows are binned once, every part is a subset of that Dataset)
or keeps the best-iteration model (`refit: false`). With several learning rates each is early-stopped and the
one with the best held-out metric is kept. `valid_fraction: 0` is the earlier fixed protocol: `max_rounds`
rounds at the first learning rate on all training rows (the predictions of `baselines.lgbm_classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ssl_modal.transactions.baselines import lgbm_params


@dataclass
class LgbmProtocol:
    learning_rates: list = field(default_factory=lambda: [0.05])
    max_rounds: int = 300
    valid_fraction: float = 0.0  # share of the training clients held out for early stopping (0: none)
    patience: int = 50
    refit: bool = False
    metric: str = "binary_logloss"  # early-stopping metric on the held-out clients (or "average_precision")
    num_leaves: int = 31
    n_jobs: int = 2


def validation_rows(clients: np.ndarray, fit: np.ndarray, fraction: float, seed: int, y=None) -> np.ndarray:
    """Bool per row: True for every row of a random `fraction` of the clients that have rows in `fit`, only ever
    inside `fit`; whole clients, so early stopping is measured on clients the booster did not see, as the
    evaluation fold is. With labels `y` (of the training rows: nothing else is read), clients with and without a
    positive row are drawn separately, each group keeping at least one client on both sides when it has two."""
    ids = pd.Series(clients).astype(str).to_numpy()
    pool = np.unique(ids[fit])
    if len(pool) < 2:
        raise ValueError(f"early stopping needs >= 2 training clients to hold some out, found {len(pool)}")
    groups = [pool]
    if y is not None:
        positive = np.isin(pool, np.unique(ids[fit & (np.asarray(y) > 0)]))
        groups = [g for g in (pool[positive], pool[~positive]) if len(g)]
    rng = np.random.default_rng(seed)
    chosen = []
    for g in groups:
        n = int(round(fraction * len(g)))
        n = min(len(g) - 1, max(1, n)) if len(g) >= 2 else n
        chosen.append(g[rng.permutation(len(g))[:n]])
    held = fit & np.isin(ids, np.concatenate(chosen))
    if not held.any() or held.sum() == fit.sum():
        raise ValueError(f"early stopping: no client left on one side of the held-out draw ({len(pool)} clients)")
    return held


def _params(protocol: LgbmProtocol, lr: float, seed: int, n_rows: int) -> dict:
    """`baselines.lgbm_params` (the one place for the settings) plus this protocol's objective and metric."""
    params = lgbm_params(seed, n_rows, learning_rate=lr, num_leaves=protocol.num_leaves, n_jobs=protocol.n_jobs)
    return {"objective": "binary", **params, "metric": protocol.metric}


def fit_predict(
    X: pd.DataFrame,
    y: np.ndarray,
    fit: np.ndarray,
    clients: np.ndarray,
    protocol: LgbmProtocol,
    seed: int,
    categorical: list[str] = (),
) -> tuple[np.ndarray, dict]:
    """Fit on the `fit` rows (see the module docstring), return (scores of the other rows, info: the learning
    rate, rounds and held-out AUC-PR chosen)."""
    import lightgbm as lgb

    X = X.copy()
    for c in categorical:
        if c in X:
            X[c] = X[c].astype("category")
    fit_idx = np.flatnonzero(fit)
    yf = y[fit_idx]
    first = _params(protocol, float(protocol.learning_rates[0]), seed, len(fit_idx))
    full = lgb.Dataset(X.iloc[fit_idx], yf, params=first, free_raw_data=False)
    full.construct()  # bins once: every part below (train / held-out / refit) is a subset sharing the bins
    if protocol.valid_fraction <= 0:
        lr, rounds, score = float(protocol.learning_rates[0]), protocol.max_rounds, float("nan")
    else:
        held = validation_rows(clients, fit, protocol.valid_fraction, seed, y)[fit_idx]
        train_part, valid_part = full.subset(np.flatnonzero(~held)), full.subset(np.flatnonzero(held))
        best = None
        for lr in protocol.learning_rates:
            booster = lgb.train(
                _params(protocol, float(lr), seed, int((~held).sum())),
                train_part,
                num_boost_round=protocol.max_rounds,
                valid_sets=[valid_part],
                callbacks=[lgb.early_stopping(protocol.patience, verbose=False)],
            )
            score = booster.best_score["valid_0"][protocol.metric]
            if best is None or (score < best[0] if protocol.metric == "binary_logloss" else score > best[0]):
                best = (score, float(lr), max(1, booster.best_iteration), booster)
        score, lr, rounds, booster = best
    if protocol.valid_fraction <= 0 or protocol.refit:
        booster = lgb.train(_params(protocol, lr, seed, len(fit_idx)), full, num_boost_round=rounds)
    info = {"learning_rate": lr, "rounds": rounds, "valid_" + protocol.metric: float(score)}
    return booster.predict(X[~fit], num_iteration=rounds), info
