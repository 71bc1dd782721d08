"""The held-out-group protocol's pieces: label subsets, summaries (mean and range), the table and the curve."""

import json

import numpy as np
import pandas as pd
import pytest

from ssl_modal.audio.protocol import format_summary, labelled_subset, plot_label_efficiency, summarise


def test_labelled_subset_takes_n_per_class_from_the_candidates_only():
    labels = np.array(list("aabbbccc") * 3)
    candidates = np.arange(16)  # rows 16-23 belong to the held-out group
    sub = labelled_subset(labels, candidates, 2, seed=0)
    assert sub.max() < 16 and sorted(labels[sub].tolist()) == list("aabbcc")
    assert np.array_equal(labelled_subset(labels, candidates, 0, seed=0), candidates)
    big = labelled_subset(labels, candidates, 50, seed=0)  # more than a class has: all of it
    assert np.array_equal(big, candidates)


def test_labelled_subset_depends_on_the_seed_and_is_reproducible():
    labels = np.repeat(np.arange(10), 150)
    cand = np.arange(1500)
    a, b = labelled_subset(labels, cand, 5, 1), labelled_subset(labels, cand, 5, 2)
    assert np.array_equal(a, labelled_subset(labels, cand, 5, 1)) and not np.array_equal(a, b)


def runs():
    out = []
    for g, acc in (("george", 0.9), ("jackson", 0.7)):
        for seed, delta in ((0, 0.0), (1, 0.02)):
            out.append(
                {
                    "row": "SSL encoder, frozen",
                    "group": g,
                    "seed": seed,
                    "per_class": 0,
                    "linear_acc": acc + delta,
                    "knn_acc": acc - 0.1,
                }
            )
            out.append(
                {
                    "row": "SSL encoder, frozen",
                    "group": g,
                    "seed": seed,
                    "per_class": 5,
                    "linear_acc": acc - 0.2,
                    "knn_acc": None,
                }
            )
    return out


def test_summary_is_mean_and_range_over_groups_and_seeds():
    summary = {(e["row"], e["per_class"]): e for e in summarise(runs())}
    full = summary[("SSL encoder, frozen", 0)]
    assert full["runs"] == 4
    assert full["linear_acc"] == pytest.approx(np.mean([0.9, 0.92, 0.7, 0.72]))
    assert (full["linear_acc_min"], full["linear_acc_max"]) == pytest.approx((0.7, 0.92))
    assert "knn_acc" not in summary[("SSL encoder, frozen", 5)]  # fine-tuned rows carry no kNN
    table = format_summary(summarise(runs()))
    assert "| SSL encoder, frozen | all | 0.810 [0.700, 0.920] | 0.700 [0.600, 0.800] | 4 |" in table
    assert "| SSL encoder, frozen | 5 | 0.600 [0.500, 0.700] | - | 4 |" in table


def test_label_efficiency_plot_is_written(tmp_path):
    path = plot_label_efficiency(summarise(runs()), tmp_path / "curve.png", "test")
    assert path.is_file() and path.stat().st_size > 1000


def demo_config(tmp_path, *overrides):
    from ssl_modal.audio.config import AudioConfig
    from ssl_modal.core.config import load_config

    from .conftest import REPO, SAMPLE

    rows = pd.read_csv(SAMPLE / "manifest.csv")
    rows = rows[rows["index"] < 2].assign(path=lambda f: [str(SAMPLE / p) for p in f.path])  # 80 clips
    rows.to_csv(tmp_path / "m.csv", index=False)
    return load_config(
        AudioConfig,
        REPO / "recipes" / "audio_fsdd.yaml",
        [f"data.manifest={tmp_path / 'm.csv'}", "train.progress=false", *overrides],
        demo=True,
    )


def test_rotation_folds_keep_the_held_out_speaker_out_of_pretraining_and_probe_training(tmp_path):
    from ssl_modal.audio.protocol import folds

    every = folds(demo_config(tmp_path, "eval.held_out=null"))
    assert [f["name"] for f in every] == ["george", "jackson", "nicolas", "yweweler"]
    for fold in every:
        g = fold["name"]
        assert all(w["speaker"] != g for w in fold["windows"]) and len(fold["windows"]) == 60
        assert all(c["speaker"] != g for c in fold["train"]) and len(fold["train"]) == 60
        assert all(c["speaker"] == g for c in fold["test"]) and len(fold["test"]) == 20
    with pytest.raises(ValueError, match=r"eval.held_out: \['gorge'\] not found in column 'speaker'"):
        folds(demo_config(tmp_path, "eval.held_out=[gorge]"))


def test_eval_test_section_replaces_the_rotation(tmp_path):
    from ssl_modal.audio.protocol import folds

    demo_config(tmp_path)  # writes m.csv
    rows = pd.read_csv(tmp_path / "m.csv")
    rows[rows.speaker == "george"].to_csv(tmp_path / "probe_test.csv", index=False)
    rows[rows.speaker != "george"].to_csv(tmp_path / "probe_train.csv", index=False)
    cfg = demo_config(
        tmp_path,
        f"eval.test={{manifest: {tmp_path / 'probe_test.csv'}}}",
        f"eval.train={{manifest: {tmp_path / 'probe_train.csv'}}}",
    )
    (fold,) = folds(cfg)
    assert len(fold["windows"]) == 80  # pretraining reads data: as it is
    assert len(fold["train"]) == 60 and {c["digit"] for c in fold["test"]} == set(range(10))
    assert all("george" in c["path"] for c in fold["test"])


def test_merging_runs_of_separate_invocations(tmp_path):
    from ssl_modal.audio.protocol import main, merge_protocols

    one, two = runs()[:4], runs()[4:]
    mfcc = {"row": "MFCC mean+std", "group": "george", "seed": None, "per_class": 0, "linear_acc": 0.5, "knn_acc": 0.4}
    for name, part, held in (("a", one + [mfcc], ["george"]), ("b", two + [mfcc], ["jackson"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "protocol.json").write_text(json.dumps({"held_out": held, "seeds": [0, 1], "runs": part}))
    merged = merge_protocols([tmp_path / "a" / "protocol.json", tmp_path / "b" / "protocol.json"])
    assert merged["held_out"] == ["george", "jackson"] and len(merged["runs"]) == 9  # the MFCC row once
    assert (
        main([str(tmp_path / "out"), str(tmp_path / "a" / "protocol.json"), str(tmp_path / "b" / "protocol.json")]) == 0
    )
    assert (tmp_path / "out" / "protocol.md").read_text().count("\n") == 5


def test_ssl_modal_eval_with_eval_test_trains_on_one_manifest_and_scores_another(tmp_path):
    import torch

    from ssl_modal.audio.model import audio_model_config, build_audio_model
    from ssl_modal.audio.recipe import evaluate

    demo_config(tmp_path)
    rows = pd.read_csv(tmp_path / "m.csv")
    rows[rows.speaker == "george"].to_csv(tmp_path / "t.csv", index=False)
    cfg = demo_config(
        tmp_path,
        f"eval.test={{manifest: {tmp_path / 't.csv'}}}",
        "encoder.channels=8",
        "encoder.dim=16",
        "eval.knn_k=3",
    )
    torch.manual_seed(0)
    table = evaluate(cfg, build_audio_model(audio_model_config(cfg)))
    names = [r.name for r in table]
    assert names == [
        "digit (eval.test): MFCC mean+std",
        "digit (eval.test): MFCC mean+std, 3 time segments",
        "digit (eval.test): random-init encoder",
        "digit (eval.test): SSL encoder",
    ]
    assert all(r.n_train == 80 and r.n_test == 20 for r in table)
