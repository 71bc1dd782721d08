"""The fraud tables' LightGBM protocol: early stopping on held-out TRAINING clients only, never the evaluated ones."""

import numpy as np
import pandas as pd
import pytest

from ssl_modal.core.config import ConfigError, load_config
from ssl_modal.transactions.baselines import lgbm_classifier
from ssl_modal.transactions.config import TransactionsConfig
from ssl_modal.transactions.lgbm_fit import LgbmProtocol, fit_predict, validation_rows


def _data(n=3000, clients=60, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "code": rng.choice(list("xyz"), n)})
    y = ((X["a"] + 0.7 * rng.normal(size=n) + (X["code"] == "x")) > 1.6).astype(int).to_numpy()
    ids = rng.integers(0, clients, n)
    return X, y, np.array([f"c{i}" for i in ids]), ids < clients // 2


def test_held_out_rows_are_whole_training_clients_with_positives_on_both_sides():
    X, y, clients, fit = _data()
    held = validation_rows(clients, fit, 0.2, seed=3, y=y)
    assert held.any() and not (held & ~fit).any()  # only training rows
    assert not set(clients[held]) & set(clients[fit & ~held])  # client-disjoint from the boosted rows
    assert len(set(clients[held])) == pytest.approx(0.2 * len(set(clients[fit])), abs=1)
    assert y[held].any() and y[fit & ~held].any()
    assert (validation_rows(clients, fit, 0.2, seed=3, y=y) == held).all()
    assert (validation_rows(clients, fit, 0.2, seed=4, y=y) != held).any()
    with pytest.raises(ValueError, match=">= 2 training clients"):
        validation_rows(clients, clients == "c0", 0.2, seed=0)


def test_fixed_protocol_is_the_earlier_classifier():
    X, y, clients, fit = _data()
    p, info = fit_predict(X, y, fit, clients, LgbmProtocol([0.05], 40, 0.0, n_jobs=1), 0, ["code"])
    Xc = X.assign(code=X["code"].astype("category"))
    old = lgbm_classifier(40, 0, int(fit.sum())).set_params(n_jobs=1).fit(Xc[fit], y[fit])
    assert np.allclose(p, old.predict_proba(Xc[~fit])[:, 1], atol=1e-12) and info["rounds"] == 40


@pytest.mark.parametrize("refit", [False, True])
def test_early_stopping_reads_no_label_of_the_scored_rows(refit):
    X, y, clients, fit = _data()
    protocol = LgbmProtocol([0.1, 0.05], 400, 0.25, patience=10, refit=refit, n_jobs=1)
    p, info = fit_predict(X, y, fit, clients, protocol, 0, ["code"])
    flipped = np.where(fit, y, 1 - y)  # every label outside the training rows changed
    q, again = fit_predict(X, flipped, fit, clients, protocol, 0, ["code"])
    assert np.array_equal(p, q) and info == again
    assert 1 <= info["rounds"] < 400 and info["learning_rate"] in (0.1, 0.05) and 0 < info["valid_binary_logloss"] < 1


def test_recipe_keys_of_the_protocol_are_checked(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("domain: transactions\neval: {lgbm_valid_fraction: 1.0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="eval.lgbm_valid_fraction"):
        load_config(TransactionsConfig, path)
