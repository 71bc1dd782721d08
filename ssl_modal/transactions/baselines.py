"""Baselines and scoring for the transactions recipes: per-client aggregates, LightGBM, fraud metrics.

Everything here reads the raw table through the recipe's ColumnMapping, so the same code serves
every dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def numeric_amount(values: pd.Series, amount_format: str | None = None) -> np.ndarray:
    """Amounts as floats; strings like "$1,234.50" are read after dropping currency signs and commas
    ("decimal_comma": "1.234,50")."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    text = values.astype(str)
    if amount_format == "decimal_comma":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    cleaned = text.str.replace(r"[^0-9.\-eE]", "", regex=True)
    return pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64)


def aggregate_features(
    frame: pd.DataFrame, client: str, mcc: str, amount: str, top_codes: int = 100, amount_format: str | None = None
) -> pd.DataFrame:
    """One row per client (index: client id as string): amount count/sum/mean/std/min/max/median, and per
    code (the `top_codes` most frequent) the count share and mean amount -- the classic hand-made baseline."""
    df = pd.DataFrame(
        {
            "client": frame[client].astype(str).to_numpy(),
            "code": frame[mcc].astype(str).to_numpy(),
            "amount": numeric_amount(frame[amount], amount_format),
        }
    )
    stats = df.groupby("client")["amount"].agg(["count", "sum", "mean", "std", "min", "max", "median"])
    stats.columns = [f"amount_{c}" for c in stats.columns]
    top = df["code"].value_counts().index[:top_codes]
    df = df[df["code"].isin(top)]
    counts = pd.crosstab(df["client"], df["code"])
    share = counts.div(counts.sum(axis=1), axis=0).add_prefix("share_")
    mean_amount = df.pivot_table(index="client", columns="code", values="amount", aggfunc="mean").add_prefix(
        "mean_amt_"
    )
    out = stats.join(share, how="left").join(mean_amount, how="left").fillna(0.0)
    out.columns = [str(c) for c in out.columns]
    return out


def lgbm_params(seed: int, n_rows: int, *, learning_rate: float = 0.05, num_leaves: int = 31, n_jobs: int = 2) -> dict:
    """The one place for the LightGBM settings of every transactions table (native `lgb.train` names):
    `lgbm_classifier` and `lgbm_fit.fit_predict` both read them."""
    return {
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": max(2, min(20, n_rows // 20)),
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "seed": seed,
        "verbose": -1,
        "num_threads": n_jobs,
    }


def lgbm_classifier(rounds: int, seed: int, n_rows: int):
    """`rounds` boosting rounds with `lgbm_params`, as a scikit-learn classifier."""
    import lightgbm as lgb

    p = lgbm_params(seed, n_rows)
    return lgb.LGBMClassifier(
        n_estimators=rounds,
        learning_rate=p["learning_rate"],
        num_leaves=p["num_leaves"],
        min_child_samples=p["min_child_samples"],
        subsample=p["bagging_fraction"],
        subsample_freq=p["bagging_freq"],
        colsample_bytree=p["feature_fraction"],
        random_state=p["seed"],
        verbose=p["verbose"],
        n_jobs=p["num_threads"],
    )


def lgbm_cv(X: np.ndarray, y: np.ndarray, cv: int, seed: int, rounds: int) -> dict:
    """Stratified-CV accuracy and macro-F1 (mean, std) of LightGBM."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    accs, f1s = [], []
    for tr, te in StratifiedKFold(cv, shuffle=True, random_state=seed).split(X, y):
        pred = lgbm_classifier(rounds, seed, len(tr)).fit(X[tr], y[tr]).predict(X[te])
        accs.append(accuracy_score(y[te], pred))
        f1s.append(f1_score(y[te], pred, average="macro", zero_division=0))
    return {
        "acc": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "f1": float(np.mean(f1s)),
        "f1_std": float(np.std(f1s)),
        "folds": cv,
    }


def fraud_scores(y: np.ndarray, score: np.ndarray) -> dict:
    """AUC-PR (average precision) and ROC-AUC of `score` for binary labels `y`."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return {"auc_pr": float("nan"), "roc_auc": float("nan"), "positives": int(y.sum()), "n": len(y)}
    return {
        "auc_pr": float(average_precision_score(y, score)),
        "roc_auc": float(roc_auc_score(y, score)),
        "positives": int(y.sum()),
        "n": len(y),
    }


def lgbm_fraud(
    X: pd.DataFrame, y: np.ndarray, train: np.ndarray, rounds: int, seed: int, categorical: list[str]
) -> dict:
    """Fit LightGBM on the `train` rows, score the others; AUC-PR / ROC-AUC on the held-out rows."""
    X = X.copy()
    for c in categorical:
        if c in X:
            X[c] = X[c].astype("category")
    model = lgbm_classifier(rounds, seed, int(train.sum()))
    model.fit(X[train], y[train])
    return fraud_scores(y[~train], model.predict_proba(X[~train])[:, 1])


class ResultTables:
    """Titled plain-text tables printed together (what `evaluate` returns for non-probe tasks)."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], list[list]]] = []
        self.data: dict = {}

    def add(self, title: str, headers: list[str], rows: list[list]) -> None:
        self.sections.append((title, headers, rows))

    @staticmethod
    def _cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    def __str__(self) -> str:
        out = []
        for title, headers, rows in self.sections:
            cells = [headers] + [[self._cell(v) for v in r] for r in rows]
            widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

            def fmt(r, widths=widths):
                return "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )

            out += [title, fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]] + [""]
        return "\n".join(out).rstrip()

    def to_markdown(self) -> str:
        out = []
        for title, headers, rows in self.sections:
            out += [
                f"**{title}**",
                "",
                "| " + " | ".join(headers) + " |",
                "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
            ]
            out += ["| " + " | ".join(self._cell(v) for v in r) + " |" for r in rows] + [""]
        return "\n".join(out)


def velocity_features(client: np.ndarray, times: np.ndarray, amount: np.ndarray, history: int = 30) -> pd.DataFrame:
    """The four hand-made velocity features per row (input order), each from the client's earlier events only:
    hours since the previous event, amount / mean of the previous `history` amounts, the amount's z-score
    against them, and the number of earlier events in the last 24 h. `times` in seconds."""
    df = pd.DataFrame(
        {
            "c": pd.Series(client).astype(str).to_numpy(),
            "t": np.asarray(times, dtype=np.float64),
            "a": np.asarray(amount, dtype=np.float64),
            "row": np.arange(len(client)),
        }
    )
    df = df.sort_values(["c", "t", "row"], kind="stable").reset_index(drop=True)
    g = df.groupby("c", sort=False)
    prev = g["a"].shift(1)
    roll = prev.groupby(df["c"], sort=False).rolling(history, min_periods=1)
    mean, std = roll.mean().reset_index(level=0, drop=True), roll.std().reset_index(level=0, drop=True)
    out = pd.DataFrame(
        {
            "hours_since_prev": (df["t"] - g["t"].shift(1)) / 3600.0,
            "amount_to_mean": df["a"] / mean.replace(0, np.nan),
            "amount_zscore": (df["a"] - mean) / std.replace(0, np.nan),
        }
    )
    # events in the 24 h before each event: per client, index of the first event within 24 h (searchsorted)
    t, c = df["t"].to_numpy(), df["c"].to_numpy()
    starts = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
    key = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(df)])) * 1e12 + t
    first = np.searchsorted(key, key - 86400.0, side="left")
    out["events_24h"] = np.arange(len(df)) - first
    out.index = df["row"].to_numpy()
    return out.sort_index().reset_index(drop=True)
