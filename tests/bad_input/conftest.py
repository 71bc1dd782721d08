"""Untrained models of every domain saved as model.pt (embedding needs no training), and the case runner.

Every case of the bad-input suite runs `ssl-modal ...` in-process and checks three things: the exit code,
the one-line message (a regex) and that nothing was left at the output path or beside it (no temp files).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.cli import main
from ssl_modal.core.checkpoint import atomic_save, make_checkpoint


@dataclass
class Case:
    """One bad input: `make(tmp) -> argv` builds the files and returns the arguments after `ssl-modal`."""

    id: str
    make: Callable[[Path], list[str]]
    rc: int
    message: str  # regex searched in stderr (rc != 0) or stdout (rc == 0)
    output: str | None = "out.parquet"  # must not exist afterwards when rc != 0
    preexisting: bool = False  # the case put something at `output` on purpose: it must stay as it was
    marks: list = field(default_factory=list)


def run_case(case: Case, tmp_path: Path, capsys, models: dict | None = None) -> str:
    """Run the case's command line; `{name}` arguments become the paths in `models`, `{out}` the output path."""
    argv = case.make(tmp_path)
    if models:
        paths = {k: str(v) for k, v in models.items()}
        argv = [a.format(**paths) if a.startswith("{") and a != "{out}" else a for a in argv]
    argv = [a.replace("{out}", str(tmp_path / case.output)) if case.output else a for a in argv]
    rc = main(argv)
    captured = capsys.readouterr()
    text = captured.err if rc else captured.out
    assert rc == case.rc, f"exit code {rc}, expected {case.rc}; stderr: {captured.err[-2000:]}"
    assert re.search(case.message, text, re.S), f"message {text!r} does not match {case.message!r}"
    if rc:
        assert "Traceback" not in captured.err and len(text.strip().splitlines()) <= 2, text
    if case.output and rc:
        out = tmp_path / case.output
        assert case.preexisting or not out.exists(), f"{out} left behind after a failed run"
        if out.parent.is_dir():
            leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
            assert not leftovers, f"temp files left: {leftovers}"
    return text


def params(cases: list[Case]):
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


def save(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(make_checkpoint(model, step=0), folder / "model.pt")
    return folder / "model.pt"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """{domain: model.pt} for vectors, text, audio, transactions, video and aligner (untrained, seed 0)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    out = {}
    from ssl_modal.vectors import build_vector_model

    out["vectors"] = save(build_vector_model({"dim": 3, "columns": ["f0", "f1", "f2"]}), root / "vectors")
    from ssl_modal.text import train_wordpiece
    from ssl_modal.text.model import build_text_model
    from tests.text.conftest import tiny_model_config

    tok = train_wordpiece(
        ["a small corpus of words", "another line of text", "bank and audio"] * 20, vocab_size=200, max_length=16
    )
    out["text"] = save(build_text_model(tiny_model_config(tok)), root / "text")
    from ssl_modal.audio import build_audio_model
    from tests.audio.conftest import tiny_config

    out["audio"] = save(build_audio_model(tiny_config()), root / "audio")
    from ssl_modal.transactions.config import EncoderConfig, ObjectivesConfig
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor
    from tests.transactions.tables import COLUMNS, raw_table

    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=16, amount_bins=8))
    seq = pre.fit_transform(raw_table(clients=4, per_client=10))
    enc = EncoderConfig(hidden=16, mcc_dim=4, cat_dim=4, num_dim=4)
    out["transactions"] = save(
        build_transactions_model(transactions_model_config(pre, enc, ObjectivesConfig(), seq)), root / "transactions"
    )
    from ssl_modal.video.model import build_video_model

    out["video"] = save(
        build_video_model(
            {
                "encoder": {"widths": [8, 16, 16], "blocks": 1, "embed_dim": 16},
                "colorization": {"weight": 1.0, "centres": [[0.0, 0.0], [60.0, 50.0]], "temperature": 1.0},
                "size": [32, 48],
            }
        ),
        root / "video",
    )
    from ssl_modal.aligner.model import build_aligner_model
    from ssl_modal.aligner.recipe import model_config
    from tests.aligner.conftest import tiny_config as aligner_config

    cfg = aligner_config(root / "pairs.csv", root / "aligner_run")
    out["aligner"] = save(
        build_aligner_model(model_config(cfg, ["a red square", "the blue block"] * 5)), root / "aligner"
    )
    return out


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def frame_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def vectors_table(path: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["f0", "f1", "f2"])
    frame["key"] = [f"k{i}" for i in range(n)]
    return frame_csv(path, frame)
