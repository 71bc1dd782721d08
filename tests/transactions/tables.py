"""A small deterministic raw transactions table (what a bank exports) for the model-side tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = {
    "client_id": "client",
    "event_time": "ts",
    "amount": "amt",
    "mcc": "mcc",
    "categorical": ["type"],
    "numeric": ["forward"],
    "transaction_id": "tx",
}
FAMILIES = [[5411, 5412, 5499], [5812, 5813, 5814], [4111, 4121, 4131], [7011, 7012, 7032]]


def raw_table(clients: int = 16, per_client: int = 40, seed: int = 0) -> pd.DataFrame:
    """Each client shops within one MCC family (cycling through it); amounts follow the code; daily events."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(clients):
        family = FAMILIES[c % len(FAMILIES)]
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=int(rng.integers(0, 48)))
        for i in range(per_client):
            mcc = family[i % 3]
            rows.append(
                {
                    "tx": f"t{c:03d}_{i:03d}",
                    "client": f"c{c}",
                    "mcc": mcc,
                    "ts": (start + pd.Timedelta(hours=24 * i + int(rng.integers(0, 5)))).isoformat(sep=" "),
                    "amt": round(float(mcc % 100) + float(rng.normal(0, 1)), 2),
                    "type": "card" if i % 4 else "online",
                    "forward": float(rng.normal()),
                }
            )
    return pd.DataFrame(rows)
