"""Encoder shapes, the two objectives against hand-built references, training, load_model, clip datasets."""

import numpy as np
import pytest
import torch

from ssl_modal.core.config import load_config
from ssl_modal.core.export import encode, load_model
from ssl_modal.core.trainer import Trainer
from ssl_modal.video.colorize import colorization_loss, frames_to_lab, quantize_ab
from ssl_modal.video.config import ColorizationConfig, FrameOrderConfig, VideoConfig
from ssl_modal.video.data import ClipDataset, ClipWindows, fit_centres
from ssl_modal.video.model import build_video_model, collate, permutations
from tests.train_configs import quiet_config
from tests.video.conftest import synthetic_frames

CENTRES = [[0.0, 0.0], [60.0, 50.0], [-20.0, 30.0], [10.0, -40.0]]


def config(color=1.0, order=0.0, num_clips=3):
    return {
        "encoder": {"widths": [8, 16, 16], "blocks": 1, "embed_dim": 16},
        "colorization": {"weight": color, "centres": CENTRES, "temperature": 1.0},
        "frame_order": {"weight": order, "num_clips": num_clips, "clip_len": 1, "hidden": 16, "dropout": 0.0},
    }


def test_encoder_stride_8_map_and_clip_embedding():
    model = build_video_model(config())
    enc = model.encoder
    assert enc.feature_map(torch.zeros(2, 48, 64, 3, dtype=torch.uint8)).shape == (2, 16, 6, 8)
    assert enc.feature_map(torch.zeros(1, 240, 427, 3, dtype=torch.uint8)).shape == (1, 16, 30, 54)
    out = enc({"frames": torch.as_tensor(synthetic_frames(6)).view(2, 3, 48, 64, 3)})
    assert out.tokens.shape == (2, 3, 16) and out.mask.all() and out.pooled.shape == (2, 16)
    assert torch.allclose(out.pooled, out.tokens.mean(1))


def test_encoder_strides_set_where_the_resolution_halves():
    cfg = config()
    cfg["encoder"]["strides"] = [2, 2, 1]
    enc = build_video_model(cfg).encoder
    assert enc.stride == 4
    assert enc.feature_map(torch.zeros(1, 240, 427, 3, dtype=torch.uint8)).shape == (1, 16, 60, 107)
    with pytest.raises(ValueError, match=r"encoder.strides\[1\]: expected in \[1, 2\], found 4"):
        load_config(VideoConfig, None, ["encoder.strides=[2, 4, 1]"])
    with pytest.raises(ValueError, match=r"one stride of 1 or 2 per width \(3 widths\), found \[2, 2\]"):
        load_config(VideoConfig, None, ["encoder.strides=[2, 2]"])


def test_colorization_objective_equals_reference_computation():
    model = build_video_model(config()).eval()
    frames = torch.as_tensor(synthetic_frames(8)).view(2, 4, 48, 64, 3)
    out = model.objectives["color"](model.encoder, {"frames": frames})
    feats = model.encoder.feature_map(frames.flatten(0, 1))  # (8, D, 6, 8)
    ab = torch.nn.functional.adaptive_avg_pool2d(frames_to_lab(frames.flatten(0, 1))[:, 1:], (6, 8))
    colors = quantize_ab(ab, torch.tensor(CENTRES)).view(2, 4, 48)
    f = feats.view(2, 4, 16, 48).transpose(2, 3)
    loss, acc = colorization_loss(f[:, 3], f[:, :3].reshape(2, 144, 16), colors[:, :3].reshape(2, -1), colors[:, 3], 4)
    assert float(out["loss"].detach()) == pytest.approx(float(loss.detach()), rel=1e-5)
    assert float(out["color_accuracy"]) == pytest.approx(float(acc))


def test_permutations_are_lexicographic():
    assert permutations(3).tolist() == [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    assert permutations(4).shape == (24, 4)


def test_frame_order_shuffles_by_the_drawn_permutation():
    model = build_video_model(config(color=0.0, order=1.0))
    objective = model.objectives["order"]
    seen = {}

    def logits(features):
        seen["x"] = features
        return torch.zeros(len(features), 6, requires_grad=True)

    objective.logits = logits
    objective.generator = torch.Generator().manual_seed(5)
    model.encoder.feature_map = lambda f: f.float().permute(0, 3, 1, 2)  # "features" = RGB; pooled -> mean colour
    frames = torch.as_tensor(synthetic_frames(3)).unsqueeze(0).repeat(4, 1, 1, 1, 1)
    out = objective(model.encoder, {"frames": frames, "order_frames": frames})
    label = torch.randint(6, (4,), generator=torch.Generator().manual_seed(5))
    assert len(set(label.tolist())) > 1
    for b in range(4):
        shown = seen["x"][b, :, 1]  # mean green = background brightness, which grows with the frame index
        assert torch.argsort(shown).tolist() == torch.argsort(permutations(3)[label[b]]).tolist()
    assert float(out["loss"].detach()) == pytest.approx(np.log(6), rel=1e-5)


def test_frame_order_head_learns_on_tiny_clips(tmp_path):
    frames = synthetic_frames(24, 32, 64)
    data = ClipDataset(
        {"v": frames}, ColorizationConfig(num_refs=1, frame_gap=1), FrameOrderConfig(weight=1.0, num_clips=3, gap=2)
    )
    model = build_video_model(config(color=0.0, order=1.0))
    result = Trainer(
        quiet_config(
            tmp_path,
            max_steps=60,
            batch_size=8,
            learning_rate=3e-3,
            warmup_steps=5,
            log_every=10,
        )
    ).fit(model, data, model.collate)
    first, last = result.history[0], result.history[-1]
    late_accuracy = np.mean([h["order/accuracy"] for h in result.history[-2:]])  # 16 clips, 3! = 6 classes
    assert last["order/loss"] < first["order/loss"] and late_accuracy > 2 / 6  # chance is 1/6


def test_colorization_trains_saves_and_reloads(tmp_path):
    frames = synthetic_frames(24, 32, 48)
    cfg = ColorizationConfig(num_refs=2, frame_gap=1, kmeans_frames=8, num_colors=4)
    centres = fit_centres({"v": frames}, cfg)
    assert len(centres) == 4 and all(len(c) == 2 for c in centres)
    model_cfg = config()
    model_cfg["colorization"]["centres"] = centres
    model = build_video_model(model_cfg)
    data = ClipDataset({"v": frames}, cfg)
    result = Trainer(
        quiet_config(
            tmp_path,
            max_steps=30,
            batch_size=4,
            learning_rate=3e-3,
            warmup_steps=3,
            log_every=5,
        )
    ).fit(model, data, model.collate)
    assert result.history[-1]["color/loss"] < result.history[0]["color/loss"]
    loaded = load_model(tmp_path)
    assert np.allclose(loaded.objectives["color"].centres.numpy(), centres)
    windows = ClipWindows({"v": frames}, {"v": 12.0}, window=8, stride=8)
    assert [(m["start_frame"], m["start_s"], m["end_s"]) for m in windows.meta] == [
        (0, 0.0, 0.667),
        (8, 0.667, 1.333),
        (16, 1.333, 2.0),
    ]
    emb = encode(loaded, windows, batch_size=2)
    assert emb.shape == (3, 16) and np.allclose(emb, encode(model.eval(), windows, batch_size=3), atol=1e-5)


def test_clip_dataset_items():
    frames = synthetic_frames(20)
    data = ClipDataset(
        {"v": frames},
        ColorizationConfig(num_refs=3, frame_gap=2),
        FrameOrderConfig(weight=1, num_clips=4, clip_len=2, gap=1),
    )
    # colour span 3*2+1 = 7; order span 4*2 + 3*1 = 11 -> starts 0..9
    assert len(data) == 10
    item = data[2]
    assert (item["frames"][:, 0, 0, 0] // 10).tolist() == [2, 4, 6, 8]
    assert (item["order_frames"][:, 0, 0, 0] // 10).tolist() == [2, 3, 5, 6, 8, 9, 11, 12]
    batch = collate([data[0], data[1]])
    assert batch["frames"].shape == (2, 4, 48, 64, 3) and batch["order_frames"].dtype == torch.uint8


# ---- bad input ---------------------------------------------------------------------------------
def test_sequence_shorter_than_frame_order_needs():
    with pytest.raises(
        ValueError,
        match=r"short.mp4: the sequence has 8 frames, but frame order \(4 clips x 1 "
        r"frames with gap 3\) needs at least 13; lower the gaps",
    ):
        ClipDataset(
            {"short.mp4": synthetic_frames(8)},
            ColorizationConfig(num_refs=1, frame_gap=1),
            FrameOrderConfig(weight=1, num_clips=4, gap=3),
        )


def test_model_config_errors():
    with pytest.raises(ValueError, match="num_clips: expected 3 or 4, found 5"):
        build_video_model(config(color=0.0, order=1.0, num_clips=5))
    with pytest.raises(ValueError, match="walk.weight are all 0: nothing to train"):
        build_video_model(config(color=0.0, order=0.0))


def test_collate_errors():
    a, b = {"frames": np.zeros((2, 8, 8, 3), np.uint8)}, {"frames": np.zeros((2, 8, 9, 3), np.uint8)}
    with pytest.raises(ValueError, match=r"'frames' arrays differ in shape across the batch"):
        collate([a, b])
    with pytest.raises(KeyError, match="every item needs 'frames'"):
        collate([{"video": 1}])


def test_frame_order_pair_difference_and_pooled_grid():
    cfg = config(color=0.0, order=1.0)
    cfg["frame_order"].update(pool=2, pair_diff=True)
    objective = build_video_model(cfg).objectives["order"]
    assert objective.pair[0].in_features == 3 * 16 * 4
    f = torch.randn(2, 3, 64)
    objective.eval()
    pair_in = []
    objective.pair.register_forward_hook(lambda m, inp, out: pair_in.append(inp[0]))
    assert objective.logits(f).shape == (2, 6)
    assert torch.equal(pair_in[1], torch.cat([f[:, 0], f[:, 2], f[:, 2] - f[:, 0]], -1))  # pairs (0,1), (0,2), (1,2)
