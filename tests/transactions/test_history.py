"""History objective: lagged states, future counts and the Gaussian NLL against loops; the objective learns;
its per-event features (state, signed residuals per lag) come out of `features`."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.transactions.config import EncoderConfig, HistoryConfig, ObjectivesConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from ssl_modal.transactions.history import HistoryForecast, future_counts, gaussian_nll, lagged_states
from tests.transactions.synthetic import FIELDS, synthetic_batch


def test_lagged_states_match_a_loop():
    x = torch.randn(3, 7, 4)
    for lag in (1, 3, 9):
        got = lagged_states(x, lag)
        for b in range(3):
            for t in range(7):
                want = x[b, t - lag] if t - lag >= 0 else torch.zeros(4)
                assert torch.equal(got[b, t], want)


def test_future_counts_match_a_loop():
    g = torch.Generator().manual_seed(0)
    gaps = torch.log1p(torch.rand(4, 12, generator=g) * 10)  # log1p hours, as preprocessed
    lengths = torch.tensor([12, 9, 5, 1])
    mask = torch.arange(12)[None] < lengths[:, None]
    horizons = [2.0, 15.0]
    counts, valid = future_counts(gaps.masked_fill(~mask, 0), mask, horizons)
    for b in range(4):
        n = int(lengths[b])
        clock = np.cumsum(np.expm1(gaps[b, :n].double().numpy()))
        for t in range(n):
            for k, h in enumerate(horizons):
                want = sum(1 for s in range(t + 1, n) if clock[s] - clock[t] <= h + 1e-6)
                assert counts[b, t, k].item() == want, (b, t, k)
                assert bool(valid[b, t, k]) == (clock[t] + h <= clock[n - 1] + 1e-6)
    assert not valid[~mask].any()


def test_gaussian_nll_matches_the_density():
    mean, logvar, y = torch.tensor([0.5]), torch.tensor([0.3]), torch.tensor([1.7])
    sd = math.exp(0.15)
    log_density = -0.5 * math.log(2 * math.pi) - math.log(sd) - 0.5 * ((1.7 - 0.5) / sd) ** 2
    assert gaussian_nll(mean, logvar, y).item() == pytest.approx(-log_density - 0.5 * math.log(2 * math.pi), rel=1e-5)


def test_history_objective_learns_and_refuses_a_non_causal_encoder():
    torch.manual_seed(0)
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=32, mcc_dim=8, cat_dim=4, num_dim=4))
    obj = HistoryForecast(enc, HistoryConfig(weight=1.0, lags=[1, 4], state_dim=4))
    opt = torch.optim.Adam([*enc.parameters(), *obj.parameters()], lr=1e-2)
    batch = synthetic_batch(16, 20, seed=1)
    first = None
    for _ in range(60):
        out = obj(enc, batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert out["loss"].item() < first - 0.5, (first, out["loss"].item())
    feats = obj.event_features(enc, batch, enc(batch))
    assert {"state_00", "state_03", "amount_z_l1", "amount_z_l4", "gap_z_l4", "amount_nll_l1"} <= set(feats)
    assert torch.isnan(feats["gap_z_l1"][:, 0]).all() and not torch.isnan(feats["amount_z_l4"]).any()
    with pytest.raises(ValueError, match="do not see the future"):
        HistoryForecast(
            TransactionEncoder(FIELDS, EncoderConfig(kind="transformer", hidden=32, heads=4)), HistoryConfig(weight=1.0)
        )


def test_history_residual_does_not_read_the_events_amount():
    """Event t's amount (and bin, and other numeric fields) is hidden from its own residual head: changing
    it moves the residual exactly by the change over the predicted std."""
    torch.manual_seed(0)
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=16, mcc_dim=4, cat_dim=4, num_dim=4))
    obj = HistoryForecast(enc, HistoryConfig(weight=1.0, lags=[2])).eval()
    batch = synthetic_batch(2, 10, seed=3)
    other = {**batch, "num": dict(batch["num"]), "cat": dict(batch["cat"])}
    other["num"]["amount"] = batch["num"]["amount"].clone()
    other["num"]["amount"][0, 5] += 1.0
    other["cat"]["amount_bin"] = batch["cat"]["amount_bin"].clone()
    other["cat"]["amount_bin"][0, 5] = 4
    a = obj.event_features(enc, batch, enc(batch))
    b = obj.event_features(enc, other, enc(other))
    r1, r2 = obj.heads(enc, batch, enc(batch))["res_l2"], obj.heads(enc, other, enc(other))["res_l2"]
    assert torch.allclose(r1[0, :6], r2[0, :6])  # event 5's own prediction and the earlier ones unchanged
    assert torch.allclose(b["amount_z_l2"][0, 5] - a["amount_z_l2"][0, 5], torch.exp(-0.5 * r1[0, 5, 1]))


def test_features_carry_the_history_columns_and_the_anomaly_score():
    from ssl_modal.transactions.features import features, windowed_mean
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor
    from tests.transactions.tables import COLUMNS, raw_table

    table = raw_table(clients=6, per_client=30)
    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=16, amount_bins=8))
    sequences = pre.fit_transform(table)
    history = HistoryConfig(weight=1.0, lags=[1, 8], state_dim=3, categorical_targets=["hour"])
    objectives = ObjectivesConfig(history=history)
    model = build_transactions_model(
        transactions_model_config(pre, EncoderConfig(hidden=16, mcc_dim=4, cat_dim=4, num_dim=4), objectives, sequences)
    ).eval()
    feats = features(model, table, progress=False)
    assert {"state_00", "state_02", "amount_z_l1", "amount_z_l8", "gap_z_l8", "anomaly_score"} <= set(feats)
    assert "state_03" not in feats and len(feats) == len(table)
    assert np.allclose(feats["anomaly_score"], feats["event_nll_l8"]) and feats["anomaly_score"].notna().all()
    parts = feats["amount_nll_l8"] + feats["gap_nll_l8"].fillna(0) + feats["hour_nll_l8"]
    assert np.allclose(feats["event_nll_l8"], parts, atol=1e-4)
    hours = pd.to_datetime(table[COLUMNS["event_time"]]).astype("datetime64[ns]").astype("int64") / 3.6e12
    day = windowed_mean(feats["anomaly_score"].to_numpy(), table[COLUMNS["client_id"]].to_numpy(), hours, 24.0)
    assert np.allclose(feats["anomaly_score_24h"], day, atol=1e-5) and feats["anomaly_score_24h"].notna().all()


def test_windowed_mean_matches_a_loop_and_is_causal():
    from ssl_modal.transactions.features import windowed_mean

    rng = np.random.default_rng(0)
    n = 300
    clients = rng.choice(np.array(["a", "b", "c", 7], dtype=object), n)
    hours = np.round(rng.uniform(0, 200, n), 0)  # whole hours: ties on purpose
    scores = rng.normal(size=n)
    scores[::17] = np.nan
    got = windowed_mean(scores, clients, hours, 24.0)
    for i in range(n):
        same = (clients == clients[i]) & (hours <= hours[i]) & (hours >= hours[i] - 24.0) & np.isfinite(scores)
        want = np.nan if np.isnan(scores[i]) else scores[same].mean()
        assert np.isclose(got[i], want, equal_nan=True), i
    later = hours.copy()
    later[hours > 100] += 1000  # moving later events never changes an earlier event's mean
    early = hours <= 100
    assert np.allclose(windowed_mean(scores, clients, later, 24.0)[early], got[early], equal_nan=True)
    with pytest.raises(ValueError, match="window_hours"):
        windowed_mean(scores, clients, hours, -1.0)
