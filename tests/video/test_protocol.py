"""Sequence-disjoint protocol: fold configs, the never-pretrain-on-evaluated-sequences guard, propagation chosen
on training sequences, and a tiny two-fold random-walk run end to end."""

import json

import pytest

from ssl_modal.core.config import load_config
from ssl_modal.video.config import VideoConfig
from ssl_modal.video.protocol import candidates, check_disjoint, fold_config
from tests.video.conftest import REPO, square_masks, synthetic_frames, write_sequence
from tests.video.test_recipe import recipe_module

WALK = str(REPO / "recipes" / "video_walk.yaml")


def test_fold_config_trains_on_the_other_folds_only():
    cfg = load_config(VideoConfig, WALK, [])
    fcfg, train, test = fold_config(cfg, 1)
    assert train == ["blackswan", "bmx-trees", "breakdance", "car-roundabout"]
    assert test == ["dog", "kite-surf", "paragliding-launch", "soapbox"]
    assert fcfg.data.train_videos[:4] == [f"../shared/data/video/clips/{n}.mp4" for n in train]
    assert fcfg.train.output_dir.endswith("fold1") and cfg.train.output_dir == "runs/video_walk"
    demo = load_config(VideoConfig, WALK, [], demo=True)
    assert not any("shared" in p for p in demo.data.train_videos + demo.data.fold_videos + [demo.data.davis_root])


def test_pretraining_on_an_evaluated_sequence_is_refused():
    dog = str(REPO / "examples/data/video/JPEGImages/dog")
    with pytest.raises(ValueError, match="pretraining video of evaluated sequence 'dog'"):
        check_disjoint([dog], ["dog"])
    check_disjoint([dog], ["blackswan"])


def test_candidates_override_and_unknown_keys():
    cfg = load_config(VideoConfig, WALK, ["propagation.candidates=[{radius: 3}, {stride: 4, topk: 5}]"])
    got = candidates(cfg.propagation)
    assert [(p.radius, p.stride, p.topk) for p in got] == [(3, 8, 10), (5, 4, 5)]
    assert candidates(load_config(VideoConfig, WALK, ["propagation.candidates=[]"]).propagation)[0].radius == 5
    bad = load_config(VideoConfig, WALK, ["propagation.candidates=[{radus: 3}]"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['radus'\]"):
        candidates(bad.propagation)
    with pytest.raises(ValueError, match=r"propagation.lab_weights\[0\]: expected in \[0, 1\], found 1.5"):
        load_config(VideoConfig, WALK, ["propagation.lab_weights=[1.5]"])


def test_tiny_two_fold_walk_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    root = tmp_path / "davis"
    write_sequence(root, "square", synthetic_frames(12, 48, 64), square_masks(12, 48, 64))
    frames, masks = synthetic_frames(12, 48, 64)[::-1].copy(), square_masks(12, 48, 64)[::-1].copy()
    write_sequence(root, "square2", frames, masks)
    overrides = [
        "data.train_videos=[]",
        "data.train_images=[]",
        "data.folds=[[square], [square2]]",
        f"data.fold_videos=['{root}/JPEGImages/{{sequence}}']",
        f"data.davis_root={root}",
        "data.size=[48, 64]",
        "encoder.widths=[8, 16, 16]",
        "encoder.embed_dim=16",
        "walk.crop=[32, 32]",
        "walk.clip_len=3",
        "walk.frame_gap=1",
        "propagation.candidates=[{radius: 2}, {radius: 3}]",
        "propagation.select_by=[raw-Lab]",
        "propagation.lab_weights=[0.0, 0.5]",
        "train.max_steps=3",
        "train.batch_size=2",
        "train.progress=false",
        "train.tensorboard=false",
        "eval.overlays=2",
        f"train.output_dir={tmp_path / 'run'}",
    ]
    assert recipe_module("video_tracking").main(["--config", WALK, *overrides]) == 0
    printed = capsys.readouterr().out
    assert "every sequence unseen in pretraining (2 folds pooled)" in printed
    summary = json.loads((tmp_path / "run" / "tracking_unseen.json").read_text())
    assert [f["test_sequences"] for f in summary["folds"]] == [["square"], ["square2"]]
    assert [f["train_sequences"] for f in summary["folds"]] == [["square2"], ["square"]]
    # raw Lab chooses the radius, then the SSL row chooses the Lab mix weight with that radius
    for f in summary["folds"]:
        radius, weight = f["propagation"]["radius"], f["propagation"]["lab_weight"]
        assert radius in (2, 3) and weight in (0.0, 0.5)
        assert [set(c) for c in f["candidates"]] == [{"settings", "raw-Lab J&F", "score"}] * 2 + [
            {"settings", "SSL J&F", "score"}
        ] * 2
        assert [(c["settings"]["radius"], c["settings"]["lab_weight"]) for c in f["candidates"][2:]] == [
            (radius, 0.0),
            (radius, 0.5),
        ]
        assert max(c["score"] for c in f["candidates"][2:]) == next(
            c["score"] for c in f["candidates"][2:] if c["settings"]["lab_weight"] == weight
        )
    assert set(summary["overall"]) == {"copy-first", "raw-Lab", "random-init", "SSL"}
    assert (tmp_path / "run" / "fold0" / "model.pt").is_file() and (tmp_path / "run" / "fold1" / "model.pt").is_file()
    # one fold at a time: the pooled table appears once both folds' results exist
    out = tmp_path / "run"
    (out / "tracking_unseen.json").unlink()
    assert recipe_module("video_tracking").main(["--config", WALK, *overrides, "eval.only_fold=1"]) == 0
    assert (out / "tracking_unseen.json").is_file()
    again = json.loads((out / "tracking_unseen.json").read_text())["overall"]
    assert {m: v["J"] for m, v in again.items()} == pytest.approx({m: v["J"] for m, v in summary["overall"].items()})
    from ssl_modal.cli import main as cli_main

    assert cli_main(["eval", WALK, *overrides]) == 0
    assert "SSL J" in capsys.readouterr().out


def test_a_candidate_typo_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    argv = ["--config", WALK, "--demo", "propagation.candidates=[{radius:3}]", f"train.output_dir={out}"]
    assert recipe_module("video_tracking").main(argv) == 2
    assert "unknown key(s) ['radius:3']" in capsys.readouterr().err and not out.exists()
