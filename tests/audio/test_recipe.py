"""The audio recipe: --demo stays offline, and a tiny end-to-end run writes every promised output."""

import importlib.util
import json

import pandas as pd
import pytest

from ssl_modal.audio.config import AudioConfig
from ssl_modal.core.config import ConfigError, load_config

from .conftest import REPO, SAMPLE, tiny_run_overrides

YAML = str(REPO / "recipes" / "audio_fsdd.yaml")


def recipe_module():
    spec = importlib.util.spec_from_file_location("audio_fsdd_recipe", REPO / "recipes" / "audio_fsdd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_config_is_offline_and_full_config_uses_shared_data():
    demo = load_config(AudioConfig, YAML, [], demo=True)
    assert "shared" not in demo.data.manifest and (REPO / demo.data.manifest).is_file()
    full = load_config(AudioConfig, YAML, ["train.max_steps=7"])
    assert full.data.manifest.endswith("shared/data/audio/fsdd/metadata.csv") and full.train.max_steps == 7
    assert full.masked_frames.fraction == 0.15 and full.masked_frames.span == 7
    assert full.weights == {"joint": 0.0, "masked_frames": 0.0, "time_shift": 0.0, "neighbour": 1.0}
    assert full.joint.method == "byol" and full.neighbour.method == "simclr"
    assert full.neighbour.exclude_same == "speaker" and full.neighbour.k == 5
    assert [v["name"] for v in full.views][-2:] == ["crop", "specaugment"]
    assert full.eval.rotate_column == "speaker" and full.eval.held_out is None and full.eval.seeds == [0, 1, 2]
    assert full.eval.label_counts == [1, 5, 20, 0] and full.eval.finetune_counts == [20]
    assert 0 in full.time_shift.shifts and min(full.time_shift.shifts) < 0 < max(full.time_shift.shifts)
    with pytest.raises(ConfigError, match="unknown key 'time_shift.crop_frame', did you mean 'crop_frames'"):
        load_config(AudioConfig, YAML, ["time_shift.crop_frame=3"], demo=True)


def test_sample_data_has_licence_and_stays_small():
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size <= 3_000_000
    frame = pd.read_csv(SAMPLE / "manifest.csv")
    assert len(frame) == 400 and frame.speaker.nunique() == 4 and frame.digit.nunique() == 10
    assert "CC BY-SA 4.0" in (SAMPLE / "README.md").read_text() and (SAMPLE / "LICENSE").is_file()


def test_tiny_end_to_end_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    rows = pd.read_csv(SAMPLE / "manifest.csv")
    rows = rows[rows["index"] < 3].assign(path=lambda f: [str(SAMPLE / p) for p in f.path])  # 120 clips
    rows.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    overrides = [
        *tiny_run_overrides(out, tmp_path / "m.csv", steps=6, batch_size=16, dim=32, channels=8),
        "train.log_every=2",
        "eval.speaker_folds=3",
        "eval.knn_k=3",
        "eval.held_out=[george]",
        "eval.label_counts=[2,0]",
        "eval.finetune_counts=[2]",
        "eval.finetune_steps=4",
    ]
    assert recipe_module().main(["--config", YAML, "--demo", *overrides]) == 0
    printed = capsys.readouterr().out
    for name in (
        "model.pt",
        "metrics.jsonl",
        "loss_curve.png",
        "tsne_digit.png",
        "probe.json",
        "embeddings.parquet",
        "protocol.json",
        "protocol.md",
        "label_efficiency.png",
    ):
        assert (out / name).is_file() and str(out / name) in printed, name
    probes = json.loads((out / "probe.json").read_text())["results"]
    names = [r["name"] for r in probes]
    for task in ("digit (unseen speakers)", "speaker (3-fold CV)"):
        for feats in ("MFCC mean+std", "random-init encoder", "SSL encoder"):
            assert f"{task}: {feats}" in names and f"{task}: {feats}" in printed
    digit = [r for r in probes if r["name"].startswith("digit")]
    assert all(r["folds"] == 4 and r["n_train"] == 90 and r["n_test"] == 30 for r in digit)  # one speaker held out
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["held_out"] == ["george"] and (out / "heldout_george" / "seed0" / "model.pt").is_file()
    rows = {(r["row"], r["per_class"]) for r in protocol["summary"]}
    for row in (
        "MFCC mean+std",
        "MFCC mean+std, 3 time segments",
        "random-init encoder, frozen",
        "SSL encoder, frozen",
    ):
        assert {(row, 2), (row, 0)} <= rows, row
    assert {("SSL encoder, fine-tuned", 2), ("random-init encoder, fine-tuned", 2)} <= rows
    tested = {r["group"] for r in protocol["runs"]}
    assert tested == {"george"} and all(r["linear_acc"] is not None for r in protocol["runs"])
    assert "headline: digit on a speaker seen by neither pretraining nor the probe" in printed
    emb = pd.read_parquet(out / "embeddings.parquet")
    assert len(emb) == 120 and {"path", "offset", "embedding"} <= set(emb.columns)


def test_missing_manifest_file_is_one_line_error(tmp_path, capsys):
    pd.DataFrame({"path": ["nowhere.wav"], "digit": [1], "speaker": ["a"]}).to_csv(tmp_path / "m.csv", index=False)
    code = recipe_module().main(
        ["--config", YAML, "--demo", f"data.manifest={tmp_path / 'm.csv'}", f"train.output_dir={tmp_path / 'run'}"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "row 1: nowhere.wav (resolved to" in err and "Traceback" not in err
