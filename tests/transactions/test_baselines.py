"""Hand-made velocity features against a per-row loop."""

import numpy as np
import pytest

from ssl_modal.transactions.baselines import velocity_features


def test_velocity_features_match_a_loop():
    rng = np.random.default_rng(0)
    n = 300
    client = rng.choice(["a", "b", "c"], n)
    times = rng.uniform(0, 10 * 86400, n).round()
    amount = rng.lognormal(3, 1, n)
    got = velocity_features(client, times, amount, history=5)
    for i in range(n):
        prev = [j for j in range(n) if client[j] == client[i] and (times[j], j) < (times[i], i)]
        prev.sort(key=lambda j: (times[j], j))
        row = got.iloc[i]
        if not prev:
            assert np.isnan(row["hours_since_prev"]) and row["events_24h"] == 0
            continue
        assert row["hours_since_prev"] == pytest.approx((times[i] - times[prev[-1]]) / 3600)
        last = amount[prev[-5:]]
        assert row["amount_to_mean"] == pytest.approx(amount[i] / last.mean())
        if len(last) > 1:
            assert row["amount_zscore"] == pytest.approx((amount[i] - last.mean()) / last.std(ddof=1))
        assert row["events_24h"] == sum(1 for j in prev if times[j] >= times[i] - 86400)


@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_velocity_table_counts_24_hours_whatever_the_time_resolution(unit):
    """Parquet gives datetime64[us]: its int64 are microseconds, not nanoseconds (issue 19: the 24 h count had
    been over ~1,000 days)."""
    import pandas as pd

    from ssl_modal.transactions.fraud_eval import velocity_table
    from ssl_modal.transactions.mapping import ColumnMapping

    times = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 10:00", "2024-01-02 09:00", "2024-01-05 00:00"])
    frame = pd.DataFrame({"client": ["a"] * 4, "ts": times.as_unit(unit), "amt": [1.0, 2.0, 3.0, 4.0]})
    got = velocity_table(frame, ColumnMapping(client_id="client", event_time="ts", amount="amt", mcc="amt"))
    assert got["events_24h"].tolist() == [0, 1, 1, 0]
    assert got["hours_since_prev"].tolist()[1:] == pytest.approx([10.0, 23.0, 63.0])
