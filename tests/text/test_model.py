"""The MLM model: masked-only head, pooling, tied weights, checkpoint rebuild, and learning through the Trainer."""

import json

import numpy as np
import pytest
import torch

from ssl_modal.core.checkpoint import atomic_save, make_checkpoint
from ssl_modal.core.export import encode, load_model
from ssl_modal.core.masking import IGNORE_INDEX, mask_tokens
from ssl_modal.core.trainer import Trainer
from ssl_modal.text import build_text_model, tokenize_texts
from tests.train_configs import quiet_config

from .conftest import tiny_model_config


def test_forward_and_head_only_at_masked_positions(small_tokenizer, sample_texts):
    torch.manual_seed(0)
    model = build_text_model(tiny_model_config(small_tokenizer)).eval()
    assert model.spec.kind == "text-mlm" and model.spec.builder == "ssl_modal.text.model:build_text_model"
    batch = model.collate(sample_texts[:8])
    objective, encoder = model.objectives["mlm"], model.encoder
    objective.generator = torch.Generator().manual_seed(3)
    out = model(batch)
    assert set(out) >= {"loss", "mlm/loss", "mlm/accuracy"} and 0 <= out["mlm/accuracy"] <= 1
    assert abs(out["loss"].item() - np.log(small_tokenizer.vocab_size)) < 1.5  # near-uniform at init
    # same masks -> the masked-only head equals the full HF forward at the masked positions
    masked, labels = mask_tokens(
        batch["input_ids"],
        mask_token_id=small_tokenizer.mask_token_id,
        vocab_size=small_tokenizer.vocab_size,
        generator=torch.Generator().manual_seed(3),
        special_tokens_mask=batch["special_tokens_mask"],
        attention_mask=batch["attention_mask"],
    )
    sel = labels != IGNORE_INDEX
    full = encoder.mlm(input_ids=masked, attention_mask=batch["attention_mask"]).logits[sel]
    reference = torch.nn.functional.cross_entropy(full, labels[sel])
    assert torch.allclose(out["loss"], reference, atol=1e-5)
    assert torch.allclose(encoder.predict(encoder.hidden(masked, batch["attention_mask"])[sel]), full, atol=1e-5)


def test_pooling_ignores_padding_and_weights_are_tied(small_tokenizer):
    torch.manual_seed(0)
    model = build_text_model(tiny_model_config(small_tokenizer)).eval()
    mlm = model.encoder.mlm
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    alone = model.embed(model.collate(["a short text ."]))
    padded = model.embed(model.collate(["a short text .", "a much longer text that forces padding on the first row ."]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)
    assert alone.shape == (1, 64)


def test_load_model_rebuilds_from_plain_checkpoint(tmp_path, small_tokenizer, sample_texts):
    torch.manual_seed(0)
    model = build_text_model(tiny_model_config(small_tokenizer, whole_word=True)).eval()
    json.dumps(model.spec.config)  # plain python only
    path = atomic_save(make_checkpoint(model), tmp_path / "model.pt")
    again = load_model(path)
    mlm = again.encoder.mlm
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    texts = sample_texts[:10]
    np.testing.assert_allclose(encode(again, texts), encode(model, texts), atol=1e-5)
    assert again.collate.word_ids and again.objectives["mlm"].whole_word
    batch = again.collate(texts)
    assert "word_ids" in batch and torch.isfinite(again(batch)["loss"])


def test_mlm_loss_decreases_through_trainer(tmp_path, small_tokenizer, sample_texts):
    torch.manual_seed(0)
    model = build_text_model(tiny_model_config(small_tokenizer))
    data = tokenize_texts(sample_texts, small_tokenizer)
    config = quiet_config(
        tmp_path / "run",
        max_steps=60,
        batch_size=16,
        learning_rate=2e-3,
        warmup_steps=5,
        log_every=10,
        device="cpu",
    )
    result = Trainer(config).fit(model, data, model.collate)
    losses = [r["mlm/loss"] for r in result.history if "mlm/loss" in r]
    assert len(losses) == 6
    # from about ln(vocab) to clearly below it: the model learns the token distribution and some context
    assert losses[0] > np.log(small_tokenizer.vocab_size) - 0.5 and losses[-1] < losses[0] - 0.4, losses
    assert all(b < a + 0.05 for a, b in zip(losses, losses[1:], strict=False)), losses
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 60 and "mlm/accuracy" in records[-1]
    assert records[-1]["mlm/accuracy"] > records[0]["mlm/accuracy"]
    assert load_model(result.checkpoint).spec.kind == "text-mlm"


def test_vocab_larger_than_model_is_rejected(small_tokenizer):
    config = tiny_model_config(small_tokenizer)
    config["hf_config"] = {
        "model_type": "bert",
        "vocab_size": 50,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 32,
    }
    with pytest.raises(ValueError, match=r"tokenizer has \d+ tokens but the model has only 50 input embeddings"):
        build_text_model(config)


def test_train_layers_freezes_the_embeddings_and_lower_layers(small_tokenizer, sample_texts):
    config = tiny_model_config(small_tokenizer)
    config["model"]["train_layers"] = 1
    config["objectives"] = {"mlm": 0.0, "simcse": 1.0, "span_crop": 0.0, "neighbour": 0.0}
    model = build_text_model(config)
    body = model.encoder.mlm.base_model
    assert not any(p.requires_grad for p in body.embeddings.parameters())
    assert not any(p.requires_grad for p in body.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in body.encoder.layer[1].parameters())
    batch = model.collate(sample_texts[:4])
    model.objectives["simcse"](model.encoder, batch)["loss"].backward()
    assert all(p.grad is None for p in body.encoder.layer[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in body.encoder.layer[1].parameters())
    config["model"]["train_layers"] = 3
    with pytest.raises(ValueError, match=r"train_layers must be in \[1, 2\]"):
        build_text_model(config)
