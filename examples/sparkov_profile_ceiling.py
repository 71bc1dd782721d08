"""How much is there to learn about a Sparkov customer's profile beyond the aggregates?

Two reference rows for the client probes of issue 19 (docs/transactions.md), on a table made by
`../shared/tools/sparkov/generate.sh` (the `profile` column holds the generator's label):

- **Bayes**: the generator's own profile parameters (`../shared/tools/sparkov/profiles/*.json`) turned into a
  likelihood per customer and profile: category and AM/PM half of the day (the generator draws both from the
  same uniform number, so they are coupled), the gamma-distributed amount per category (draws under 1 replaced
  by U(1, 10), as the generator does), the weekday weights and the events-per-day rate; posterior with the
  population's profile shares as prior. Fraud rows are left out (their profiles are not modelled). No learned
  model can beat the exact Bayes classifier; this one omits a few cues (fraud rows, merchant distance, holiday
  weights), so it is a close lower bound of that ceiling.
- **aggregates + hand-made extras**: the recipe's aggregates plus cues they lack (per-category AM share, log-amount
  mean and std per category, hour and weekday histograms, events per day), through the recipe's probe (logistic
  regression, standardised, C = 0.1, client halves of `data.split_seed: 0`, each half predicted by the other).

    python examples/sparkov_profile_ceiling.py /tmp/sparkov_profiles/transactions.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import accuracy_score, roc_auc_score

from ssl_modal.transactions.baselines import aggregate_features
from ssl_modal.transactions.client_eval import probe_model
from ssl_modal.transactions.recipe import client_half

PROFILES = Path(__file__).resolve().parents[1].parent / "shared/tools/sparkov/profiles"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
LABELS = {
    "profile": lambda p: p,
    "age band": lambda p: "young" if p.startswith("young") else ("25-50" if "2550" in p else "50+"),
    "gender": lambda p: "female" if "female" in p else "male",
    "city size": lambda p: "rural" if "rural" in p else "urban",
}


def profile_log_likelihood(ok: pd.DataFrame, index: np.ndarray, n_clients: int, spec: dict, days) -> np.ndarray:
    """Per client: log p(its non-fraud events | profile `spec`), up to terms equal for every profile."""
    weights = spec["categories_wt"]
    total = sum(weights.values())
    upper = np.cumsum([weights[c] / total for c in weights])
    lower = np.r_[0.0, upper[:-1]]
    am_share = spec["shopping_time"]["AM"] / sum(spec["shopping_time"].values())
    joint = {}
    for category, lo, hi in zip(weights, lower, upper, strict=True):  # one uniform draws both: intervals overlap
        joint[(category, True)] = max(0.0, min(hi, am_share) - lo)
        joint[(category, False)] = max(0.0, hi - max(lo, am_share))
    log_p = np.log(np.array([joint.get(key, 0.0) for key in zip(ok["category"], ok["am"], strict=True)]) + 1e-9)
    amount = ok["amt"].to_numpy()
    for category, moments in spec["categories_amt"].items():
        rows = ok["category"].to_numpy() == category
        shape, scale = moments["mean"] ** 2 / moments["stdev"] ** 2, moments["stdev"] ** 2 / moments["mean"]
        redrawn = stats.gamma.cdf(1, shape, scale=scale) * ((amount[rows] >= 1) & (amount[rows] <= 10)) / 9
        log_p[rows] += np.log(stats.gamma.pdf(amount[rows], shape, scale=scale) + redrawn + 1e-12)
    day_weight = np.array([spec["date_wt"]["day_of_week"].get(d, 100) for d in WEEKDAYS], float)
    day_weight *= np.bincount(days.day_of_week, minlength=7)
    log_p += np.log(day_weight / day_weight.sum())[ok["weekday"].to_numpy()]
    ll = np.bincount(index, weights=log_p, minlength=n_clients)
    per_day = np.round(np.bincount(index, minlength=n_clients) / (len(days) - 0.5))  # a fraud day drops ~1 day
    low, high = spec["avg_transactions_per_day"]["min"], spec["avg_transactions_per_day"]["max"]
    return ll + np.where((per_day >= low) & (per_day <= high), -np.log(high - low + 1), -50.0)


def scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    acc = float(accuracy_score(y, classes[proba.argmax(1)]))
    if len(classes) == 2:
        return acc, float(roc_auc_score(y == classes[1], proba[:, 1]))
    return acc, float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def main(path: str) -> None:
    if not PROFILES.is_dir():
        sys.exit(f"the generator's profiles are not at {PROFILES} (../shared beside the repository)")
    df = pd.read_parquet(path, columns=["client_id", "trans_date_trans_time", "category", "amt", "is_fraud", "profile"])
    df["client_id"] = df["client_id"].astype(str)
    times = pd.to_datetime(df["trans_date_trans_time"])
    df["am"], df["weekday"], df["hour"] = (times.dt.hour < 12).to_numpy(), times.dt.day_of_week, times.dt.hour
    profile = df.groupby("client_id")["profile"].first()
    clients = np.unique(df["client_id"].to_numpy())
    names = sorted(profile.unique())
    days = pd.date_range(times.min().normalize(), times.max().normalize())

    ok = df[df["is_fraud"] == 0]
    index = pd.Index(clients).get_indexer(ok["client_id"])
    ll = np.stack(
        [
            profile_log_likelihood(ok, index, len(clients), json.loads((PROFILES / f"{n}.json").read_text()), days)
            for n in names
        ],
        1,
    )
    ll += np.log(profile.value_counts(normalize=True).reindex(names).to_numpy())
    posterior = np.exp(ll - ll.max(1, keepdims=True))
    posterior /= posterior.sum(1, keepdims=True)

    agg = aggregate_features(df, "client_id", "category", "amt").loc[clients]
    grouped = df.groupby(["client_id", "category"])
    log_amount = np.log1p(df["amt"]).groupby([df["client_id"], df["category"]])
    extras = (
        pd.concat(
            [
                grouped["am"].mean().unstack().add_prefix("am_share_"),
                log_amount.mean().unstack().add_prefix("log_amount_mean_"),
                log_amount.std().unstack().add_prefix("log_amount_std_"),
                pd.crosstab(df["client_id"], df["hour"], normalize="index").add_prefix("hour_"),
                pd.crosstab(df["client_id"], df["weekday"], normalize="index").add_prefix("weekday_"),
                (df.groupby("client_id").size() / len(days)).rename("events_per_day"),
            ],
            axis=1,
        )
        .loc[clients]
        .fillna(0.0)
    )
    rows_a = client_half(pd.DataFrame({"c": clients}), "c", 0)

    print("| label | aggregates | aggregates + hand-made extras | Bayes (generator's parameters) |")
    print("|:---|---:|---:|---:|")
    for label, of in LABELS.items():
        y = np.array([of(p) for p in profile.loc[clients]])
        classes = np.unique(y)
        bayes = np.stack([posterior[:, [of(n) == c for n in names]].sum(1) for c in classes], 1)
        cells = []
        for features in (agg.to_numpy(), np.hstack([agg.to_numpy(), extras.to_numpy()])):
            proba = np.zeros((len(y), len(classes)))
            for fit in (rows_a, ~rows_a):
                model = probe_model("logreg", 0, int(fit.sum())).fit(features[fit], y[fit])
                seen = list(model.classes_)  # a rare profile may be missing from one half
                columns = [i for i, c in enumerate(classes) if c in seen]
                proba[np.ix_(~fit, columns)] = model.predict_proba(features[~fit])
            cells.append("{:.3f} / {:.3f}".format(*scores(y, proba, classes)))
        cells.append("{:.3f} / {:.3f}".format(*scores(y, bayes, classes)))
        print(f"| {label} ({len(classes)}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sparkov_profiles/transactions.parquet")
