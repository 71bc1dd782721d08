"""Bad command lines, paths and checkpoints, the same for every domain (shown on the vectors model)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd
import pytest

from ssl_modal.cli import main, parse_args

from .conftest import Case, params, run_case, vectors_table, write_csv


def embed(model: str = "vectors", data: str = "t.csv", *extra: str):
    def make(tmp):
        if data == "t.csv":
            vectors_table(tmp / "t.csv")
        return ["embed", f"{{{model}}}", str(tmp / data), "-o", "{out}", *extra]

    return make


CASES = [
    Case(
        "unknown-output-suffix",
        embed(),
        2,
        r"unknown output suffix '\.txt'; supported: \.parquet, \.npy, \.csv",
        output="emb.txt",
    ),
    Case("xlsx-output", embed(), 2, r"unknown output suffix '\.xlsx'", output="emb.xlsx"),
    Case(
        "batch-size-zero",
        embed("vectors", "t.csv", "--batch-size", "0"),
        2,
        r"--batch-size: expected an integer >= 1, found 0",
    ),
    Case("batch-size-negative", embed("vectors", "t.csv", "--batch-size", "-3"), 2, r"found -3"),
    Case(
        "id-column-missing",
        embed("vectors", "t.csv", "--id-column", "idx"),
        2,
        r"t\.csv: --id-column 'idx' is not a column \(found columns: f0, f1, f2, key\)",
    ),
    Case("id-column-typo", embed("vectors", "t.csv", "--id-column", "kye"), 2, r"did you mean 'key'\?"),
    Case("column-missing", embed("vectors", "t.csv", "--column", "txt"), 2, r"--column 'txt' is not a column"),
    Case(
        "output-under-a-file",
        embed(),
        2,
        r"cannot write here: '.*t\.csv' is a file, expected a folder",
        output="t.csv/emb.parquet",
    ),
    Case(
        "output-is-a-folder",
        lambda tmp: (tmp / "out.parquet").mkdir() or embed()(tmp),
        2,
        r"is a folder; expected a parquet file path",
        preexisting=True,
    ),
    Case(
        "dataset-output-is-a-file",
        lambda tmp: write_csv(tmp / "ds", "x") and embed()(tmp),
        2,
        r"is a file; a datasets folder needs a folder path",
        output="ds",
        preexisting=True,
    ),
    Case(
        "checkpoint-missing",
        lambda tmp: vectors_table(tmp / "t.csv") and ["embed", str(tmp / "nope.pt"), str(tmp / "t.csv"), "-o", "{out}"],
        2,
        r"checkpoint not found: .*nope\.pt",
    ),
    Case(
        "checkpoint-empty",
        lambda tmp: (
            write_csv(tmp / "m.pt", "")
            and vectors_table(tmp / "t.csv")
            and ["embed", str(tmp / "m.pt"), str(tmp / "t.csv"), "-o", "{out}"]
        ),
        2,
        r"m\.pt is empty \(0 bytes\)",
    ),
    Case(
        "checkpoint-not-a-checkpoint",
        lambda tmp: (
            write_csv(tmp / "m.pt", "PK\x03\x04 junk")
            and vectors_table(tmp / "t.csv")
            and ["embed", str(tmp / "m.pt"), str(tmp / "t.csv"), "-o", "{out}"]
        ),
        2,
        r"truncated, corrupt or not a weights-only file",
    ),
    Case(
        "run-folder-without-model",
        lambda tmp: (
            (tmp / "run").mkdir()
            or vectors_table(tmp / "t.csv")
            and ["embed", str(tmp / "run"), str(tmp / "t.csv"), "-o", "{out}"]
        ),
        2,
        r"holds no model\.pt and no usable",
    ),
    Case("data-missing", embed("vectors", "absent.csv"), 2, r"absent\.csv: file not found"),
    Case(
        "data-empty-file",
        lambda tmp: write_csv(tmp / "e.csv", "") and embed("vectors", "e.csv")(tmp),
        2,
        r"e\.csv: file is empty \(0 bytes\)",
    ),
    Case(
        "data-header-only",
        lambda tmp: write_csv(tmp / "h.csv", "f0,f1,f2\n") and embed("vectors", "h.csv")(tmp),
        2,
        r"h\.csv: no data rows \(only a header: f0, f1, f2\)",
    ),
    Case(
        "data-excel-file",
        lambda tmp: write_csv(tmp / "t.xlsx", "PK") and embed("vectors", "t.xlsx")(tmp),
        2,
        r"unknown file extension '\.xlsx'; supported: .*\.csv",
    ),
    Case(
        "data-latin1-export",
        lambda tmp: (
            write_csv(tmp / "l.csv", "f0,f1,f2,name\n1,2,3,Société\n", "latin-1") and embed("vectors", "l.csv")(tmp)
        ),
        2,
        r"l\.csv: not valid UTF-8 at line 2, .*iconv -f latin1",
    ),
    Case(
        "id-column-with-empty-ids",
        lambda tmp: (
            write_csv(tmp / "i.csv", "f0,f1,f2,key\n1,2,3,a\n1,2,3,\n")
            and embed("vectors", "i.csv", "--id-column", "key")(tmp)
        ),
        2,
        r"--id-column 'key': expected an id in every row, found 1 empty value\(s\) \(data rows \[2\]\)",
    ),
    Case(
        "features-with-a-vectors-model",
        lambda tmp: vectors_table(tmp / "t.csv") and ["features", "{vectors}", str(tmp / "t.csv"), "-o", "{out}"],
        2,
        r"features needs a transactions model",
    ),
    Case("inspect-missing", lambda tmp: ["inspect", str(tmp / "nothing.pt")], 2, r"checkpoint not found", output=None),
    Case(
        "validate-unknown-schema",
        lambda tmp: vectors_table(tmp / "t.csv") and ["validate", "transaction", str(tmp / "t.csv")],
        2,
        r"schema 'transaction' not found.*did you mean "
        r"'transactions'\?",
        output=None,
    ),
    Case(
        "validate-bad-map-syntax",
        lambda tmp: (
            vectors_table(tmp / "t.csv") and ["validate", "transactions", str(tmp / "t.csv"), "--map", "amount:amt"]
        ),
        2,
        r"--map: expected SCHEMA_COLUMN=FILE_COLUMN \(e\.g\. amount=amt\), found 'amount:amt'",
        output=None,
    ),
    Case(
        "validate-map-unknown-role",
        lambda tmp: (
            vectors_table(tmp / "t.csv") and ["validate", "transactions", str(tmp / "t.csv"), "--map", "amnt=f0"]
        ),
        2,
        r"'amnt' is not a column of schema 'transactions'",
        output=None,
    ),
    Case(
        "validate-recipe-without-columns",
        lambda tmp: (
            vectors_table(tmp / "t.csv")
            and ["validate", "transactions", str(tmp / "t.csv"), "--recipe", "recipes/text_mlm.yaml"]
        ),
        2,
        r"--recipe needs a recipe with a columns: block",
        output=None,
    ),
    Case("train-recipe-missing", lambda tmp: ["train", str(tmp / "r.yaml"), "--demo"], 2, r"r\.yaml", output=None),
    Case(
        "train-output-dir-under-a-file",
        lambda tmp: (
            write_csv(tmp / "f", "x")
            and write_csv(
                tmp / "r.yaml",
                f"domain: vectors\nmodel: {{dim: 3}}\ndata: {{file: {vectors_table(tmp / 't.csv')}}}\n"
                f"train: {{output_dir: {tmp / 'f' / 'run'}, max_steps: 1, batch_size: 2, progress: false, "
                "tensorboard: false}\n",
            )
            and ["train", str(tmp / "r.yaml")]
        ),
        2,
        r"run: cannot create this folder: '.*f' is a file, expected a folder",
        output=None,
    ),
    Case(
        "csv-output-works",
        embed("vectors", "t.csv", "--id-column", "key"),
        0,
        r"wrote 6 embeddings to .*emb\.csv",
        output="emb.csv",
    ),
    Case("dataset-output-works", embed(), 0, r"wrote 6 embeddings to .*emb_ds", output="emb_ds"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_command_lines(case, tmp_path, capsys, models, monkeypatch):
    run_case(case, tmp_path, capsys, models)


def test_csv_output_keeps_id_name_and_dtype(tmp_path, models):
    frame = pd.DataFrame({"f0": [1.0, 2.0], "f1": [0.0, 1.0], "f2": [3.0, 1.0], "account": [1007, 2044]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert (
        main(
            [
                "embed",
                str(models["vectors"]),
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "e.csv"),
                "--id-column",
                "account",
            ]
        )
        == 0
    )
    back = pd.read_csv(tmp_path / "e.csv")
    assert list(back.columns[:2]) == ["account", "emb_000"] and back["account"].tolist() == [1007, 2044]
    assert back.filter(like="emb_").shape == (2, 32)
    assert (
        main(
            [
                "embed",
                str(models["vectors"]),
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "e.parquet"),
                "--id-column",
                "account",
            ]
        )
        == 0
    )
    assert pd.read_parquet(tmp_path / "e.parquet")["account"].dtype == "int64"


@pytest.mark.parametrize(
    "argv, overrides, demo",
    [
        (["train", "r.yaml", "--demo", "train.max_steps=2"], ["train.max_steps=2"], True),
        (["train", "r.yaml", "a=1", "--demo", "b=2"], ["a=1", "b=2"], True),
        (["eval", "r.yaml", "train.seed=3"], ["train.seed=3"], False),
    ],
)
def test_flags_and_overrides_in_any_order(argv, overrides, demo):
    args = parse_args(argv)
    assert args.overrides == overrides and args.demo is demo


def test_stray_argument_and_version(capsys):
    with pytest.raises(SystemExit) as err:
        parse_args(["inspect", "m.pt", "a=1"])
    assert err.value.code == 2 and "unrecognized arguments: a=1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        parse_args(["--version"])
    assert err.value.code == 0 and capsys.readouterr().out.startswith("ssl-modal ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(tmp_path, models, capsys):
    vectors_table(tmp_path / "t.csv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["embed", str(models["vectors"]), str(tmp_path / "t.csv"), "-o", str(locked / "e.parquet")]) == 2
        assert "is not writable (permission denied)" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


@dataclass
class _Train:
    max_steps: int = 10


@dataclass
class _Config:
    train: _Train = field(default_factory=_Train)


def test_recipe_scripts_take_overrides_around_flags(tmp_path, capsys):
    from ssl_modal.core.script import recipe_main

    recipe = write_csv(tmp_path / "r.yaml", "train: {max_steps: 5}\ndemo: {train: {max_steps: 2}}\n")
    seen = []
    argv = ["train.max_steps=3", "--config", str(recipe), "--demo"]
    assert recipe_main(seen.append, _Config, str(recipe), "doc", argv) == 0 and seen[0].train.max_steps == 3
    with pytest.raises(SystemExit):
        recipe_main(seen.append, _Config, str(recipe), "doc", ["--config", str(recipe), "a=1", "--bogus", "b=2"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_spark_features_take_a_folder_and_refuse_a_file(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a\n1\n")
    taken = tmp_path / "out.parquet"
    taken.write_text("x")
    assert (
        main(["features", str(tmp_path / "run"), str(tmp_path / "t.csv"), "-o", str(taken), "--engine", "spark"]) == 2
    )
    assert "is a file; --engine spark writes a folder of Parquet part files" in capsys.readouterr().err
    # a folder name without a suffix passes the output check and fails only on the missing checkpoint
    assert (
        main(
            [
                "features",
                str(tmp_path / "run"),
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "features/"),
                "--engine",
                "spark",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown output suffix" not in err and "run" in err
