"""Transactions recipe: pretrain the field encoder on a table, evaluate it for the recipe's task, export.

    python recipes/transactions_pretrain.py --config recipes/transactions_age.yaml        (4-class age probe)
    python recipes/transactions_pretrain.py --config recipes/transactions_sparkov.yaml    (fraud, time split)
    python recipes/transactions_pretrain.py --config recipes/transactions_tabformer.yaml  (fraud, one user)
    python recipes/transactions_pretrain.py --config recipes/transactions_berka.yaml      (unlabelled: export)
    python recipes/transactions_pretrain.py --config recipes/transactions_sparkov.yaml --demo   (offline sample)

Writes under train.output_dir: model.pt, metrics.jsonl, loss_curve.png, results.md, client_embeddings.parquet,
<field>_embeddings.parquet + <field>_skipgram.parquet + <field>_map.png per embedded code field, and for the
fraud task features.parquet (one row per transaction).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.core.export import load_model
from ssl_modal.core.script import recipe_main
from ssl_modal.transactions.config import TransactionsConfig
from ssl_modal.transactions.features import client_embeddings
from ssl_modal.transactions.mcc import mcc_embeddings, nearest_mccs, plot_mcc_map
from ssl_modal.transactions.recipe import evaluate, plot_loss_curve, read_frame, train
from ssl_modal.transactions.skipgram import train_skipgram


def write_codes(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.copy()
    out["code"] = out["code"].astype(str)
    out["vector"] = [np.asarray(v, dtype=np.float32).tolist() for v in out["vector"]]
    out.to_parquet(path, index=False)
    return path


def run(cfg: TransactionsConfig) -> None:
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter()
    model = load_model(result.checkpoint)
    report = evaluate(cfg, model)
    evaluated = time.perf_counter()
    written = [
        ("model", result.checkpoint),
        ("metrics", out / "metrics.jsonl"),
        ("loss curve", plot_loss_curve(out, out / "loss_curve.png")),
    ]
    frame = read_frame(cfg)
    clients = getattr(report, "data", {}).get("clients")
    if clients is None:
        clients = client_embeddings(model, frame, batch_size=cfg.eval.batch_size, pooling=cfg.eval.client_pooling)
    clients.to_parquet(out / "client_embeddings.parquet", index=False)
    written.append(("client embeddings", out / "client_embeddings.parquet"))
    feats = getattr(report, "data", {}).get("features")
    if feats is not None:
        feats.to_parquet(out / "features.parquet", index=False)
        written.append(("fraud features", out / "features.parquet"))
    sequences = model.preprocessor.transform(frame)
    neighbours = []
    for field in cfg.eval.embedding_fields:
        codes = mcc_embeddings(model, field)
        skip = mcc_embeddings(
            train_skipgram(
                sequences,
                field,
                model.preprocessor.vocabulary(field),
                dim=cfg.eval.skipgram_dim,
                epochs=cfg.eval.skipgram_epochs,
                seed=cfg.train.seed,
            ),
            field,
        )
        for name, table in (("embeddings", codes), ("skipgram", skip)):
            written.append((f"{field} {name}", write_codes(table, out / f"{field}_{name}.parquet")))
            if len(table) >= 3:
                png = plot_mcc_map(
                    table,
                    out / f"{field}_{name}_map.png",
                    f"'{field}' {name} ({cfg.eval.map_method.upper()})",
                    cfg.eval.map_method,
                )
                written.append((f"{field} {name} map", png))
        top = str(codes["code"].iloc[0])
        neighbours.append((field, top, nearest_mccs(codes, top, 5), nearest_mccs(skip, top, 5)))
    text = str(report)
    (out / "results.md").write_text(getattr(report, "to_markdown", lambda: text)() + "\n", encoding="utf-8")
    written.append(("results table", out / "results.md"))
    print(f"\n{text}")
    for field, top, enc, skip in neighbours:
        print(
            f"\nnearest '{field}' codes to the most frequent one ({top}): encoder -> "
            + ", ".join(f"{c} ({s:.2f})" for c, s in enc[["code", "similarity"]].to_numpy())
            + "; skip-gram -> "
            + ", ".join(f"{c} ({s:.2f})" for c, s in skip[["code", "similarity"]].to_numpy())
        )
    if feats is not None:
        cols = list(feats.columns[:2]) + [
            c for c in ("surprise_mcc", "surprise_amount_bin", "order_score", "history_distance") if c in feats
        ]
        print("\nfraud-feature table (first rows):")
        print(feats[cols].head(5).to_string(index=False))
    last = [r for r in (result.history or []) if "loss" in r]
    if last:
        print(f"\nfinal training loss {last[-1]['loss']:.4f} at step {result.step}")
    print(
        f"time: pretraining {trained - start:.0f} s, evaluation {evaluated - trained:.0f} s, "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print("written:")
    for name, path in written:
        print(f"  {name:<22} {path}")


def main(argv: list[str] | None = None) -> int:
    return recipe_main(run, TransactionsConfig, "recipes/transactions_sparkov.yaml", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
