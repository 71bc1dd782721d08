"""The transactions recipe end to end on a small generated table: probe, fraud and export tasks."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ssl_modal.core.config import ConfigError, load_config
from ssl_modal.transactions.config import TransactionsConfig
from tests.transactions.tables import COLUMNS, raw_table

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "recipes"))


def write_recipe(tmp_path, task: str, **data) -> Path:
    table = raw_table(clients=16, per_client=40)
    table["is_fraud"] = ((table.index % 37) == 5).astype(int)
    table.to_csv(tmp_path / "tx.csv", index=False)
    labels = pd.DataFrame({"client": [f"c{c}" for c in range(16)], "label": [c % 4 for c in range(16)]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    recipe = {
        "domain": "transactions",
        "data": {"table": str(tmp_path / "tx.csv"), "task": task, **data},
        "columns": COLUMNS,
        "preprocess": {"max_length": 16, "amount_bins": 8},
        "encoder": {"hidden": 16, "mcc_dim": 8, "cat_dim": 4, "num_dim": 4},
        "eval": {
            "cv": 2,
            "knn_k": 3,
            "lgbm_rounds": 20,
            "embedding_fields": ["mcc", "type"],
            "skipgram_epochs": 1,
            "raw_features": ["type"],
            "categorical_raw": ["type"],
        },
        "train": {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 20,
            "batch_size": 8,
            "log_every": 5,
            "checkpoint_every": 100,
            "progress": False,
            "tensorboard": False,
            "monitor_every": 0,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def run_recipe(path, capsys) -> str:
    import transactions_pretrain

    assert transactions_pretrain.main(["--config", str(path)]) == 0
    return capsys.readouterr().out


def test_probe_task_prints_baselines_beside_ssl_and_writes_outputs(tmp_path, capsys):
    out = run_recipe(
        write_recipe(
            tmp_path,
            "probe",
            labels_file=str(tmp_path / "labels.csv"),
            label_client_column="client",
            label_column="label",
        ),
        capsys,
    )
    for row in (
        "aggregates + logreg",
        "random-init encoder",
        "SSL encoder",
        "aggregates + LightGBM",
        "SSL embeddings + LightGBM",
    ):
        assert row in out
    run = tmp_path / "run"
    for name in (
        "model.pt",
        "loss_curve.png",
        "client_embeddings.parquet",
        "mcc_embeddings.parquet",
        "mcc_skipgram.parquet",
        "mcc_embeddings_map.png",
        "type_embeddings.parquet",
        "results.md",
    ):
        assert (run / name).is_file(), name
        assert str(run / name) in out
    assert len(pd.read_parquet(run / "client_embeddings.parquet")) == 16


def test_probe_task_with_integer_client_ids_matches_the_labels(tmp_path, capsys, caplog):
    """Integer ids (as in the Sber age sample) keep their dtype in the embeddings; the labels' ids are read as
    text: the probe must still find every client (it found none before, "100 of 100 clients have no label")."""
    path = write_recipe(
        tmp_path,
        "probe",
        labels_file=str(tmp_path / "labels.csv"),
        label_client_column="client",
        label_column="label",
    )
    table = pd.read_csv(tmp_path / "tx.csv")
    table["client"] = table["client"].str[1:].astype(int)
    table.to_csv(tmp_path / "tx.csv", index=False)
    labels = pd.read_csv(tmp_path / "labels.csv")
    labels["client"] = labels["client"].str[1:].astype(int)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with caplog.at_level("WARNING", logger="ssl_modal"):
        out = run_recipe(path, capsys)
    assert "SSL encoder" in out and "have no label" not in caplog.text
    assert pd.read_parquet(tmp_path / "run" / "client_embeddings.parquet")["client_id"].dtype.kind == "i"


def test_fraud_task_reports_auc_for_raw_raw_plus_ssl_and_ssl_alone(tmp_path, capsys):
    out = run_recipe(write_recipe(tmp_path, "fraud", label_column="is_fraud", split_time="2024-01-25"), capsys)
    for row in ("raw columns", "raw + SSL features", "SSL features alone", "raw + random-init features"):
        assert row in out
    assert "AUC-PR" in out and "ROC-AUC" in out
    feats = pd.read_parquet(tmp_path / "run" / "features.parquet")
    assert len(feats) == 16 * 40


def test_export_task(tmp_path, capsys):
    out = run_recipe(write_recipe(tmp_path, "export"), capsys)
    assert "client embeddings" in out and "nearest neighbours" in out


def test_fraud_without_split_time_and_bad_keys_are_one_line_errors(tmp_path, capsys):
    import transactions_pretrain

    path = write_recipe(tmp_path, "fraud", label_column="is_fraud")
    assert transactions_pretrain.main(["--config", str(path)]) == 2
    assert "needs data.split_time" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key 'encoder.hiden', did you mean 'hidden'"):
        load_config(TransactionsConfig, path, ["encoder.hiden=3"])
    with pytest.raises(ValueError, match="data.task: expected 'probe', 'fraud' or 'export'"):
        load_config(TransactionsConfig, path, ["data.task=regression"])


def test_shipped_recipes_load():
    for name in ("age", "sparkov", "tabformer", "berka", "sparkov_profiles"):
        path = REPO / "recipes" / f"transactions_{name}.yaml"
        if path.is_file():
            cfg = load_config(TransactionsConfig, path)
            assert cfg.columns["client_id"] and cfg.train.output_dir.startswith("runs/")
    demo = load_config(TransactionsConfig, REPO / "recipes" / "transactions_sparkov.yaml", demo=True)
    assert demo.data.table.startswith("examples/data/transactions/") and demo.data.split == "time"
    full = load_config(TransactionsConfig, REPO / "recipes" / "transactions_sparkov.yaml")
    assert full.data.split == "client" and full.objectives.history.weight > 0


def test_fraud_client_split_scores_every_row_out_of_fold_beside_velocity_and_random_init(tmp_path, capsys):
    path = write_recipe(tmp_path, "fraud", label_column="is_fraud", split="client")
    recipe = yaml.safe_load(path.read_text())
    recipe["objectives"] = {"history": {"weight": 1.0, "lags": [1, 4], "state_dim": 4}}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = run_recipe(path, capsys)
    for row in (
        "raw + velocity (hand-made)",
        "raw + SSL features",
        "raw + random-init features",
        "raw + velocity + SSL features",
        "anomaly_score as the score (no labels)",
        "raw amount as the score (no labels)",
        "halves of 8 / 8 clients",
    ):
        assert row in out, row
    feats = pd.read_parquet(tmp_path / "run" / "features.parquet")
    assert len(feats) == 16 * 40 and set(feats["fold"]) == {0, 1}
    # each client is scored by the fold whose encoder did not see it: one fold per client, 8 clients each
    client = COLUMNS["client_id"]  # features keep the input's client column name ("client")
    per_client = feats.groupby(client)["fold"].nunique()
    assert (per_client == 1).all() and feats.groupby("fold")[client].nunique().tolist() == [8, 8]
    assert (tmp_path / "run" / "fold1" / "model.pt").is_file()


def test_client_half_keeps_clients_whole_and_is_seeded():
    from ssl_modal.transactions.recipe import client_half

    frame = pd.DataFrame({"c": np.repeat(np.arange(11), 3)})
    a, b = client_half(frame, "c", 0), client_half(frame, "c", 1)
    assert a.sum() == 15 and frame[a]["c"].nunique() == 5
    assert not (set(frame[a]["c"]) & set(frame[~a]["c"])) and (a != b).any()
    assert (client_half(frame, "c", 0) == a).all()


def test_probe_client_split_predicts_each_client_by_the_other_half(tmp_path, capsys):
    path = write_recipe(tmp_path, "probe", label_column="segment", split="client")
    table = pd.read_csv(tmp_path / "tx.csv")
    table["segment"] = table["client"].str[1:].astype(int) % 2
    table.to_csv(tmp_path / "tx.csv", index=False)
    out = run_recipe(path, capsys)
    for row in (
        "aggregates + logreg",
        "SSL embeddings + logreg",
        "random-init embeddings + LightGBM",
        "aggregates + SSL embeddings + LightGBM",
        "8 / 8 clients",
    ):
        assert row in out, row
    assert (tmp_path / "run" / "fold1" / "model.pt").is_file()
    # several labels, one pass of embeddings: each label's table equals its own single-label evaluation
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.client_eval import evaluate_probe_clients

    table["third"] = table["client"].str[1:].astype(int) % 3
    table.to_csv(tmp_path / "tx.csv", index=False)
    cfg = load_config(TransactionsConfig, path)
    models = load_model(tmp_path / "run"), load_model(tmp_path / "run" / "fold1")
    both = evaluate_probe_clients(cfg, models[0], fold1=models[1], label_columns=["segment", "third"])
    assert [title.split("'")[1] for title, _, _ in both.sections] == ["segment", "third"]
    assert "3 classes" in both.sections[1][0]
    alone = evaluate_probe_clients(cfg, models[0], fold1=models[1], label_columns=["third"])
    assert both.data["labels"]["third"] == alone.data["labels"]["third"]
    linear = evaluate_probe_clients(cfg, models[0], fold1=models[1], label_columns=["third"], kinds=("logreg",))
    assert linear.data["labels"]["third"] == {k: v for k, v in alone.data["labels"]["third"].items() if "logreg" in k}
    with pytest.raises(ValueError, match=r"kinds: expected some of \['logreg', 'LightGBM'\], found \['svm'\]"):
        evaluate_probe_clients(cfg, models[0], fold1=models[1], kinds=("svm",))
    table.loc[0, "segment"] = 5
    table.to_csv(tmp_path / "tx.csv", index=False)
    from ssl_modal.transactions.client_eval import table_labels

    with pytest.raises(ValueError, match="expected one value per client, found 2 values for client 'c0'"):
        table_labels(table, "client", "segment")


def test_fraud_client_split_fits_fold0_beside_fold1_pretraining_with_the_same_results(tmp_path, capsys):
    path = write_recipe(tmp_path, "fraud", label_column="is_fraud", split="client")
    recipe = yaml.safe_load(path.read_text())
    recipe["threads"] = 1  # fold 0's LightGBM fits run in a thread while fold 1 pretrains
    recipe["eval"].update({"lgbm_valid_fraction": 0.25, "lgbm_patience": 5, "lgbm_rounds": 60, "lgbm_threads": 2})
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = run_recipe(path, capsys)
    assert "LightGBM rounds (fold 0 / 1)" in out and " at lr 0.05" in out
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.fraud_eval import evaluate_fraud_clients

    cfg = load_config(TransactionsConfig, path)  # evaluation only: both encoders given, fits one after the other
    again = evaluate_fraud_clients(cfg, load_model(tmp_path / "run"), fold1=load_model(tmp_path / "run" / "fold1"))
    md = (tmp_path / "run" / "results.md").read_text(encoding="utf-8")
    shown = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| raw")}
    assert len(shown) == 7  # six LightGBM rows and the raw amount as a score
    for name, row in again.data["rows"].items():
        if name in shown:
            assert f"{row['auc_pr']:.4f}" in shown[name], name
    assert all(len(v) == 2 and 1 <= v[0]["rounds"] <= 60 for v in again.data["lgbm"].values())
