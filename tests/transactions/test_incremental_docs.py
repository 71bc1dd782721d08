"""The incremental scoring example of docs/transactions.md runs as written (with a small model in place of the
demo run that `make demo` trains)."""

import re
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    text = (ROOT / "docs/transactions.md").read_text()
    section = text[text.index("## Incremental scoring") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _small_model(table):
    from ssl_modal.transactions.config import EncoderConfig, HistoryConfig, ObjectivesConfig
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor

    columns = ColumnMapping(
        client_id="client_id",
        event_time="trans_date_trans_time",
        amount="amt",
        mcc="category",
        transaction_id="trans_num",
    )
    pre = TransactionPreprocessor(PreprocessConfig(columns=columns, max_length=64, calendar=["hour", "weekday"]))
    sequences = pre.fit_transform(table)
    objectives = ObjectivesConfig(history=HistoryConfig(weight=1.0, lags=[1, 4], state_dim=3))
    torch.manual_seed(0)
    encoder = EncoderConfig(hidden=16, mcc_dim=4, cat_dim=4, num_dim=4)
    config = transactions_model_config(pre, encoder, objectives, sequences)
    return build_transactions_model(config).eval()


def test_documented_incremental_example_runs(tmp_path, monkeypatch, capsys):
    import pandas as pd

    import ssl_modal

    sample = ROOT / "examples/data/transactions/sparkov_sample.csv"
    (tmp_path / sample.parent.relative_to(ROOT)).mkdir(parents=True)
    shutil.copy(sample, tmp_path / sample.relative_to(ROOT))
    model = _small_model(pd.read_csv(sample))
    monkeypatch.setattr(ssl_modal, "load_model", lambda path: model if path == "runs/transactions_demo" else None)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_example(), "docs/transactions.md", "exec"), scope)
    feats = scope["feats"]
    assert len(feats) == 1 and feats["scored"].all() and feats.attrs["report"]["new_clients"] == 0
    assert "anomaly_score_24h" in capsys.readouterr().out
    assert (tmp_path / "state.sqlite").is_file()
