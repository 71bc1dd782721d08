"""The video recipes: configs load (demo offline), a tiny end-to-end run writes every output, CLI eval prints."""

import importlib.util
import json

import pandas as pd
import pytest

from ssl_modal.cli import main as cli_main
from ssl_modal.core.config import ConfigError, load_config
from ssl_modal.video.config import VideoConfig
from tests.video.conftest import REPO, square_masks, synthetic_frames, write_sequence

TRACKING = str(REPO / "recipes" / "video_tracking.yaml")
ORDER = str(REPO / "recipes" / "video_frame_order.yaml")


def recipe_module(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_load_and_demo_is_offline():
    for path in (TRACKING, ORDER):
        demo = load_config(VideoConfig, path, [], demo=True)
        paths = demo.data.train_videos + demo.data.heldout_videos + [demo.data.davis_root]
        paths += [p.format(sequence=n) for fold in demo.data.folds or [] for n in fold for p in demo.data.fold_videos]
        assert not any("shared" in p for p in paths) and all((REPO / p).exists() for p in paths), paths
        full = load_config(VideoConfig, path, [])
        assert "shared" in full.data.davis_root and full.propagation.temperature == 0.05
    assert load_config(VideoConfig, TRACKING, []).colorization.weight == 1.0
    assert load_config(VideoConfig, ORDER, []).frame_order.weight == 1.0
    with pytest.raises(ConfigError, match="unknown key 'propagation.topK', did you mean 'topk'"):
        load_config(VideoConfig, TRACKING, ["propagation.topK=5"])


def tiny_overrides(tmp_path):
    root = tmp_path / "davis"
    a = write_sequence(root, "square", synthetic_frames(14, 48, 64), square_masks(14, 48, 64))
    b = write_sequence(
        root, "square2", synthetic_frames(12, 48, 64)[::-1].copy(), square_masks(12, 48, 64)[::-1].copy()
    )
    return [
        "data.folds=null",
        f"data.train_videos=[{a}]",
        f"data.heldout_videos=[{b}]",
        f"data.davis_root={root}",
        "data.size=[48, 64]",
        "encoder.widths=[8, 16, 16]",
        "encoder.embed_dim=16",
        "colorization.kmeans_frames=4",
        "train.max_steps=6",
        "train.batch_size=4",
        "train.log_every=2",
        "train.progress=false",
        "train.tensorboard=false",
        "train.monitor_every=0",
        "eval.window=4",
        "eval.window_stride=4",
        "eval.frame_order_batches=2",
        "eval.overlays=3",
        f"train.output_dir={tmp_path / 'run'}",
    ]


def test_tiny_tracking_run_and_cli_eval(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    overrides = tiny_overrides(tmp_path) + ["frame_order.weight=0.5", "frame_order.gap=1"]
    assert recipe_module("video_tracking").main(["--config", TRACKING, *overrides]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "run"
    for name in (
        "model.pt",
        "metrics.jsonl",
        "loss_curve.png",
        "tracking.json",
        "clip_embeddings.parquet",
        "overlays/square.png",
        "overlays/square2.png",
    ):
        assert (out / name).is_file() and str(out / name) in printed, name
    for word in ("copy-first J", "raw-Lab F", "random-init J", "SSL F", "J&F", "frame-order accuracy"):
        assert word in printed
    scores = json.loads((out / "tracking.json").read_text())
    assert (
        scores["methods"] == ["copy-first", "raw-Lab", "random-init", "SSL"] and scores["kind"] == "video-color+order"
    )
    assert all(0 <= v["J"] <= 1 and 0 <= v["F"] <= 1 for v in scores["overall"].values())
    assert len(scores["sequences"]["square"]["SSL"]["J_frames"]) == 14
    assert scores["frame_order"]["chance (1/n!)"] == pytest.approx(1 / 6)
    emb = pd.read_parquet(out / "clip_embeddings.parquet")
    assert list(emb.columns) == ["id", "embedding", "video", "start_frame", "start_s", "end_s"]
    assert emb.start_frame.tolist() == [0, 4, 8]  # 14 frames, windows of 4 every 4
    assert emb.video.unique().tolist() == ["square"] and len(emb.embedding[0]) == 16
    assert cli_main(["eval", TRACKING, *overrides, "frame_order.weight=0.5", "eval.overlays=0"]) == 0
    assert "SSL J" in capsys.readouterr().out


def test_frame_order_recipe_needs_heldout_videos(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    overrides = tiny_overrides(tmp_path) + ["data.heldout_videos=[]", "eval.baselines=false", "train.max_steps=2"]
    assert recipe_module("video_frame_order").main(["--config", ORDER, *overrides]) == 2
    assert "frame-order evaluation needs data.heldout_videos" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before training


def test_unreadable_training_video_is_skipped_and_reported(tmp_path, monkeypatch, caplog):
    from ssl_modal.video.recipe import training_data

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    cfg = load_config(VideoConfig, TRACKING, tiny_overrides(tmp_path))
    cfg.data.train_videos = cfg.data.train_videos + [str(bad)]
    report, data = training_data(cfg)
    assert list(report.skipped) == [str(bad)] and len(report.videos) == 1 and len(data) == 14 - 7 + 1
    assert "skipped 1 unreadable" in str(report)
    cfg.data.on_error = "error"
    with pytest.raises(ValueError, match="broken.mp4"):
        training_data(cfg)
    cfg.data.train_videos = [str(tmp_path / "nothing*.mp4")]
    with pytest.raises(FileNotFoundError, match=r"no video matches '.*nothing\*.mp4'"):
        training_data(cfg)


def test_videos_from_a_manifest(tmp_path):
    from ssl_modal.data.validate import DataValidationError
    from ssl_modal.video.data import load_videos

    report = load_videos([str(REPO / "data_schemas" / "examples" / "video_manifest.jsonl")], [60, 107])
    assert [len(v) for v in report.videos.values()] == [25, 25]
    assert next(iter(report.videos.values())).shape == (25, 60, 107, 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x", "fsp": 3}\n')
    with pytest.raises(DataValidationError, match="fsp"):
        load_videos([str(bad)], None)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"path": str(REPO / "examples/data/video/JPEGImages/dog"), "num_frames": 30}) + "\n")
    with pytest.raises(ValueError, match=r"dog: the manifest expects 30 frames, found 25"):
        load_videos([str(wrong)], None)
