"""`model.pooling_layers`: the exported vector concatenates the mean-pooled states of chosen layers."""

import dataclasses

import pytest
import torch

import ssl_modal.text.features as features
from ssl_modal.core.config import load_config
from ssl_modal.text import build_text_model
from ssl_modal.text.config import ModelConfig, TextConfig
from ssl_modal.text.recipe import feature_rows

from .conftest import tiny_model_config


def layered(tokenizer, layers):
    config = tiny_model_config(tokenizer)
    config["model"] = {**config["model"], "pooling_layers": layers}
    torch.manual_seed(0)
    return build_text_model(config).eval()


def test_export_concatenates_hand_pooled_layers(small_tokenizer, sample_texts):
    model = layered(small_tokenizer, [2, 0])
    batch = model.collate([text[: 20 + 15 * i] for i, text in enumerate(sample_texts[:5])])
    assert batch["attention_mask"].sum(1).min() < batch["attention_mask"].shape[1]  # padding is present
    pooled = model.embed(batch)
    assert pooled.shape == (5, 2 * 64)
    with torch.no_grad():
        states = model.encoder.mlm.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states
    mask = batch["attention_mask"].float()
    by_hand = [(states[i] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) for i in (2, 0)]
    torch.testing.assert_close(pooled, torch.cat(by_hand, dim=1), atol=1e-5, rtol=1e-5)
    last = layered(small_tokenizer, None).embed(batch)  # same seed, same weights: today's export
    torch.testing.assert_close(pooled[:, :64], last, atol=1e-5, rtol=1e-5)
    assert model.encoder.sentences(batch).shape == (5, 64)  # the training objectives pool the last layer


def test_cache_keys_differ_per_layer_set(tmp_path, small_tokenizer):
    texts = ["one short text", "another text, a little longer than the first"]
    keys = set()
    for layers in (None, [2], [1, 2], [0, 2]):
        model = layered(small_tokenizer, layers)
        keys.add(features.model_fingerprint(model))
        features.encode_sorted(model, texts, 2, tmp_path / "features")
    assert len(keys) == 4 and len(list((tmp_path / "features").glob("*.npy"))) == 4
    assert model.spec.config["model"]["pooling_layers"] == [0, 2]  # stored in the checkpoint's config


def test_every_probed_encoder_gets_the_same_export(small_tokenizer):
    cfg = TextConfig()
    model = layered(small_tokenizer, [1, 2])
    assert [enc.encoder.pooling_layers for _, enc in feature_rows(cfg, model)] == [[1, 2], [1, 2]]


def test_bad_layers_are_refused(small_tokenizer):
    with pytest.raises(ValueError, match=r"pooling_layers: expected indices in \[0, 2\]"):
        layered(small_tokenizer, [3])
    with pytest.raises(ValueError, match="pooling_layers: expected layer indices >= 0 or null"):
        ModelConfig(pooling_layers=[-1])
    assert dataclasses.replace(ModelConfig(), pooling_layers=4).pooling_layers == [4]


def test_recipe_override(tmp_path):
    from .conftest import REPO

    cfg = load_config(TextConfig, str(REPO / "recipes" / "text_minilm.yaml"), ["model.pooling_layers=[2,4,6]"])
    assert cfg.model.pooling_layers == [2, 4, 6]
