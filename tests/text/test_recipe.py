"""The text recipe: --demo stays offline, and a tiny end-to-end run writes every promised output."""

import importlib.util
import json
import re

import pandas as pd
import pytest

from ssl_modal.core.config import ConfigError, load_config
from ssl_modal.core.monitors import training_records
from ssl_modal.text import read_corpus
from ssl_modal.text import recipe as recipe
from ssl_modal.text.config import TextConfig
from ssl_modal.text.lexical import lsa_targets

from .conftest import REPO, SAMPLE


def recipe_module():
    spec = importlib.util.spec_from_file_location("text_mlm_recipe", REPO / "recipes" / "text_mlm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


YAML = str(REPO / "recipes" / "text_mlm.yaml")


def test_demo_config_is_offline_and_full_config_uses_shared_data():
    demo = load_config(TextConfig, YAML, [], demo=True)
    paths = [demo.data.file, demo.eval.test["file"], demo.tokenizer.vocab_file or ""]
    assert not any("shared" in p for p in paths), paths
    assert demo.tokenizer.train_vocab_size and all((REPO / p).is_file() for p in paths[:2])
    assert demo.model.hidden_size == 128 and demo.model.num_layers == 2 and demo.model.max_length == 64
    assert demo.objectives.neighbour_source == "tfidf" and demo.objectives.mlm and demo.objectives.neighbour
    full = load_config(TextConfig, YAML, ["train.max_steps=7"])
    assert "shared" in full.data.file and "shared" in full.eval.test["file"] and full.train.max_steps == 7
    assert full.tokenizer.vocab_file.endswith("bert_uncased_vocab/vocab.txt") and full.mlm.probability == 0.15
    with pytest.raises(ConfigError, match="unknown key 'mlm.probabilty', did you mean 'probability'"):
        load_config(TextConfig, YAML, ["mlm.probabilty=0.2"], demo=True)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "data.pack=true",
            "objectives.neighbour=0",  # the demo's neighbour pairs need one text per row
            "objectives.simcse=0.5",
            "train.batch_size=4",
            "eval.finetune_steps=6",
            "eval.finetune_examples=200",
        ],
        [
            "objectives.mlm=0.5",
            "objectives.neighbour=1.0",
            "objectives.neighbour_k=5",
            "data.max_tokens=24",
            "eval.cache_features=true",
        ],
        [
            "objectives.mlm=0",
            "objectives.neighbour=1.0",
            "objectives.neighbour_source=tfidf",
            "data.max_tokens=24",
            "objectives.lexical=0.5",
            "objectives.lexical_dims=16",
            "model.pooling_layers=[0,1]",
        ],
    ],
)
def test_tiny_end_to_end_run(tmp_path, monkeypatch, capsys, extra):
    monkeypatch.chdir(REPO)
    lsa_texts = []
    monkeypatch.setattr(recipe, "lsa_targets", lambda texts, *a: lsa_texts.append(texts) or lsa_targets(texts, *a))
    out = tmp_path / "run"
    overrides = [
        f"train.output_dir={out}",
        "train.max_steps=12",
        "train.log_every=4",
        "train.progress=false",
        "train.tensorboard=false",
        "train.monitor_every=0",
        "tokenizer.train_vocab_size=600",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.intermediate_size=64",
        "data.max_train_examples=400",
        "eval.probe_train_examples=400",
        "eval.label_efficiency=100",
        "eval.knn_k=5",
        *extra,
    ]
    assert recipe_module().main(["--config", YAML, "--demo", *overrides]) == 0
    printed = capsys.readouterr().out
    for row in ("tf-idf + logreg", "random-init encoder", "pretrained encoder"):
        assert row in printed
    for name in ("model.pt", "metrics.jsonl", "loss_curve.png", "probe.json", "embeddings_test.parquet"):
        assert (out / name).is_file() and str(out / name) in printed, name
    assert (out / "tokenizer.json").is_file()  # the trained vocabulary, reused on resume
    probes = json.loads((out / "probe.json").read_text())["results"]
    names = ["tf-idf + logreg", "random-init encoder", "pretrained encoder"] * 2
    tuned = "eval.finetune_steps=6" in extra
    fine_tuned = ["random-init encoder, fine-tuned", "pretrained encoder, fine-tuned"] if tuned else []
    assert [r["name"] for r in probes] == names + fine_tuned
    assert [r["n_train"] for r in probes][:6] == [400] * 3 + [100] * 3 and all(r["n_test"] == 1000 for r in probes)
    assert probes[0]["linear_acc"] > 0.6  # TF-IDF on 400 AG News texts is far above chance (0.25)
    emb = pd.read_parquet(out / "embeddings_test.parquet")
    layers = "model.pooling_layers=[0,1]" in extra  # embeddings and layer 1, concatenated
    assert len(emb) == 1000 and list(emb.columns) == ["id", "embedding"] and len(emb.embedding[0]) == 32 * (1 + layers)
    assert emb.id.tolist()[:3] == [1, 2, 3]  # 1-based data rows of the test file
    records = training_records(out)
    assert [r["step"] for r in records] == [4, 8, 12]
    first = "neighbour" if "objectives.mlm=0" in extra else "mlm"  # the first objective counts real tokens
    assert all(r[f"{first}/real_tokens_per_s"] > 0 and r["time"] > 0 for r in records)  # trainer: sum / s
    if tuned:
        assert "simcse/loss" in records[-1]
    if "objectives.neighbour=1.0" in extra:  # partners mined before step 1; their embeddings cached
        assert "neighbour/loss" in records[-1] and records[-1]["neighbour/accuracy"] >= 0
        tfidf = "objectives.neighbour_source=tfidf" in extra  # mined from TF-IDF rows: no model embeddings
        assert tfidf == (not (out / "features").exists())
    if "objectives.lexical=0.5" in extra:  # LSA targets of the 400 pretraining texts only, never the test file
        assert "lexical/loss" in records[-1] and len(lsa_texts) == 1
        assert lsa_texts[0] == read_corpus(SAMPLE / "train.csv").texts[:400]


def test_minilm_recipe_config():
    cfg = load_config(TextConfig, str(REPO / "recipes" / "text_minilm.yaml"), [])
    assert cfg.model.init_from == "minilm" and cfg.tokenizer.vocab_file is None
    assert cfg.objectives.neighbour > 0 and cfg.eval.probe_train_examples == [5000, None]
    assert cfg.objectives.lexical > 0 and cfg.model.pooling_layers == [2, 4, 6]
    assert cfg.train.autocast == "auto" and cfg.eval.autocast == "auto" and cfg.data.max_train_examples is None
    demo = load_config(TextConfig, str(REPO / "recipes" / "text_minilm.yaml"), [], demo=True)
    assert "shared" not in demo.data.file and "shared" not in demo.eval.test["file"] and demo.train.max_steps <= 50


def test_scratch_recipe_config():
    cfg = load_config(TextConfig, str(REPO / "recipes" / "text_scratch.yaml"), [])
    assert cfg.model.init_from is None and cfg.objectives.neighbour > 0 and cfg.objectives.neighbour_source == "tfidf"
    assert cfg.train.max_minutes <= 30 and cfg.eval.probe_train_examples == [5000, None]
    with pytest.raises(ValueError, match="neighbour_source: expected one of 'model', 'tfidf', 'agreed', found 'x'"):
        load_config(TextConfig, str(REPO / "recipes" / "text_scratch.yaml"), ["objectives.neighbour_source=x"])


def test_bad_recipe_input_exits_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.csv"
    bad.write_text("body,label\nhello,1\n", encoding="utf-8")
    code = recipe_module().main(["--config", YAML, "--demo", f"data.file={bad}", f"train.output_dir={tmp_path / 'r'}"])
    assert code == 2
    assert "bad.csv has no text column 'text'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.train_file=a.csv", "data.train_file: renamed to data.file"),
        ("data.test_file=b.csv", "write eval: {test: {file: b.csv}}"),
        ("eval.test=b.csv", "eval.test: expected a mapping"),
    ],
)
def test_old_data_keys_are_refused_with_the_new_ones(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(TextConfig, YAML, [override], demo=True)


def test_eval_sections_inherit_from_data(tmp_path):
    from ssl_modal.text.recipe import read_split, split_data

    probe = tmp_path / "probe.csv"
    probe.write_text("body,y\nfirst text,a\nsecond text,b\n", encoding="utf-8")
    cfg = load_config(TextConfig, YAML, [], demo=True)
    assert split_data(cfg, "probe") is cfg.data  # no eval.train: the probes learn on the pretraining data
    test = split_data(cfg, "test")
    assert test.file.endswith("test.csv") and test.text_column == cfg.data.text_column
    cfg.eval.train = {"file": str(probe), "text_column": "body", "label_column": "y"}
    corpus = read_split(cfg, "probe", labels=True)
    assert corpus.texts == ["first text", "second text"] and corpus.labels == ["a", "b"]
    cfg.eval.train = cfg.eval.test = None
    with pytest.raises(ValueError, match="set eval.test"):
        split_data(cfg, "test")
