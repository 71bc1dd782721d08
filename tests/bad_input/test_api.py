"""The Python API's bad inputs: a bare string, mixed-type ids, unknown formats, raw tables to the wrong model."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_modal import encode, export, load_model
from ssl_modal.core.writers import OutputPathError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vec(models):
    return load_model(models["vectors"])


X = [[0.1, 0.2, 0.3], [1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]


@pytest.mark.parametrize(
    "data, error, match",
    [
        ("one string", TypeError, r"a single str \(10 characters\); pass a list of examples, e\.g\. \[text\]"),
        (b"bytes", TypeError, r"a single bytes"),
        ((x for x in X), TypeError, r"expected a sized collection .* found generator"),
        ([], ValueError, r"encode got no data \(0 examples\)"),
    ],
)
def test_encode_refuses(vec, data, error, match):
    with pytest.raises(error, match=match):
        encode(vec, data)


def test_encode_series_like_a_list(vec):
    frame = pd.DataFrame({"f0": [r[0] for r in X], "f1": [r[1] for r in X], "f2": [r[2] for r in X]})
    series = pd.Series([dict(r) for _, r in frame.iterrows()], index=[7, 3, 9])
    np.testing.assert_allclose(encode(vec, series), encode(vec, frame), rtol=1e-6)


@pytest.mark.parametrize(
    "path, kwargs, error, match",
    [
        (
            "emb.csv.txt",
            {},
            ValueError,
            r"unknown output suffix '\.txt'; supported: \.parquet, \.npy, \.csv, or a path "
            r"without a suffix",
        ),
        (
            "emb.parquet",
            {"format": "xlsx"},
            ValueError,
            r"export format: expected one of parquet, npy, csv, dataset, "
            r"found 'xlsx'",
        ),
        (
            "emb.parquet",
            {"ids": [1, "b", 3]},
            ValueError,
            r"ids 'id': expected one type for every id, found int \(first "
            r"at position 0: 1\), str \(first at position 1: 'b'\)",
        ),
        ("emb.parquet", {"ids": [1, 2]}, ValueError, r"ids 'id' has 2 entries but data has 3 rows"),
        ("emb.parquet", {"ids": "abc"}, TypeError, r"ids: expected one id per row"),
        ("file/emb.parquet", {}, OutputPathError, r"'.*file' is a file, expected a folder"),
        ("emb.parquet", {"batch_size": 0}, ValueError, r"batch_size: expected an integer >= 1, found 0"),
    ],
)
def test_export_refuses_and_leaves_nothing(vec, tmp_path, path, kwargs, error, match):
    (tmp_path / "file").write_text("x")
    with pytest.raises(error, match=match):
        export(vec, X, tmp_path / path, progress=False, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_ids_keep_dtype(vec, tmp_path):
    export(vec, X, tmp_path / "a.parquet", ids=[10, 20, 30], progress=False)
    export(vec, X, tmp_path / "b.parquet", ids=pd.DataFrame({"acct": ["x", "y", "z"], "n": [1, 2, 3]}), progress=False)
    assert pd.read_parquet(tmp_path / "a.parquet")["id"].dtype == "int64"
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert list(b.columns) == ["acct", "n", "embedding"] and b["n"].dtype == "int64"


def test_raw_table_to_a_transactions_model_says_what_it_expects(models):
    model = load_model(models["transactions"])
    raw = pd.DataFrame({"client": ["c1"], "ts": ["2024-01-01"], "amt": [1.0], "mcc": [5411]})
    with pytest.raises(
        ValueError,
        match=r"encodes client windows of its fields .* the first item lacks .* for a raw "
        r"table use ssl_modal\.transactions\.client_embeddings\(model, table\)",
    ):
        encode(model, raw)
    with pytest.raises(ValueError, match=r"found a str"):
        encode(model, ["some text"])


@pytest.mark.slow
def test_validate_works_from_the_built_wheel(tmp_path):
    """The wheel carries the schemas (ssl_modal/schemas/): validate finds them outside the repository."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("ssl_modal", "data_schemas"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("ssl_modal-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "ssl_modal" / "schemas" / "transactions.schema.json").is_file()
    sample = REPO / "examples" / "data" / "transactions" / "sparkov_sample.csv"
    script = "import sys, ssl_modal.cli as c; print(c.__file__, file=sys.stderr); sys.exit(c.main(sys.argv[1:]))"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "validate",
            "transactions",
            str(sample),
            "--recipe",
            str(REPO / "recipes" / "transactions_sparkov.yaml"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith(str(site / "ssl_modal" / "cli.py")), run.stderr  # not the repository's copy
    assert "OK:" in run.stdout and "matches schema 'transactions' (4848 rows)" in run.stdout


def test_missing_tensorboard_is_said_once(tmp_path, monkeypatch, caplog):
    from ssl_modal.core import monitors

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    monkeypatch.setattr(monitors, "_warned", set())
    with caplog.at_level("WARNING", logger="ssl_modal"):
        for name in ("a", "b"):
            monitors.MetricsSink(tmp_path / name, tensorboard=True).close()
    said = [r.message for r in caplog.records if "TensorBoard is not installed" in r.message]
    assert len(said) == 1 and "ssl-modal[tensorboard]" in said[0]
    assert (tmp_path / "a" / "metrics.jsonl").exists()
