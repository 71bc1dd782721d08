"""Sentence objectives: span crops are contiguous spans of the text, SimCSE / span-crop train and combine with MLM."""

import pytest
import torch

from ssl_modal.text import build_text_model
from ssl_modal.text.sentence import span_crops

from .conftest import tiny_model_config


def test_span_crops_are_cls_span_sep_of_the_right_size():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[101, 5, 6, 7, 8, 9, 10, 11, 102, 0], [101, 20, 21, 22, 102, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    for _ in range(20):
        crop, crop_mask = span_crops(ids, mask, 0.3, 0.7, g)
        for row in range(2):
            n = int(mask[row].sum())
            real = crop[row][crop_mask[row].bool()].tolist()
            assert real[0] == 101 and real[-1] == 102
            inner, body = real[1:-1], ids[row, 1 : n - 1].tolist()
            assert 1 <= len(inner) <= len(body)
            assert 0.3 * len(body) <= len(inner) <= max(1, -(-0.7 * len(body) // 1))
            starts = [i for i in range(len(body)) if body[i : i + len(inner)] == inner]
            assert starts, (inner, body)  # a contiguous span of the text


@pytest.mark.parametrize(
    "weights",
    [{"mlm": 0.0, "simcse": 1.0}, {"mlm": 0.0, "span_crop": 1.0}, {"mlm": 1.0, "simcse": 0.5, "span_crop": 0.5}],
)
def test_sentence_objectives_train_alone_or_with_mlm(small_tokenizer, sample_texts, weights):
    torch.manual_seed(0)
    config = tiny_model_config(small_tokenizer)
    config["model"]["dropout"] = 0.1
    config["objectives"] = {"mlm": 0.0, "simcse": 0.0, "span_crop": 0.0, **weights}
    model = build_text_model(config).train()
    assert set(model.objectives) == {k for k, v in weights.items() if v}
    model.set_generator(torch.Generator().manual_seed(0))
    batch = model.collate(sample_texts[:16])
    out = model(batch)
    expected = sum(w * out[f"{k}/loss"] for k, w in weights.items() if w)
    torch.testing.assert_close(out["loss"], expected)
    assert sum(k.endswith("real_tokens") for k in out) == 1  # counted once, by the first objective
    out["loss"].backward()
    assert model.encoder.mlm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_simcse_views_differ_only_through_dropout(small_tokenizer, sample_texts):
    torch.manual_seed(0)
    config = tiny_model_config(small_tokenizer)
    config["objectives"] = {"mlm": 0.0, "simcse": 1.0}
    model = build_text_model(config).train()  # tiny_model_config has dropout 0: identical views
    batch = model.collate(sample_texts[:16])
    a, b = model.encoder.sentences(batch), model.encoder.sentences(batch)
    torch.testing.assert_close(a, b)
    assert model(batch)["simcse/accuracy"] == 1.0


def test_span_crop_refuses_packed_rows(small_tokenizer, sample_texts):
    from ssl_modal.text.packing import pack_texts

    config = tiny_model_config(small_tokenizer)
    config["objectives"] = {"mlm": 0.0, "span_crop": 1.0}
    model = build_text_model(config)
    enc = small_tokenizer(sample_texts[:8])
    with pytest.raises(ValueError, match="span_crop needs one text per row: set data.pack: false"):
        model(model.collate(pack_texts(enc["input_ids"], enc["special_tokens_mask"], 32)))


def test_config_mistakes_name_the_key():
    from ssl_modal.text import ModelConfig, ObjectivesConfig, TextConfig

    with pytest.raises(ValueError, match="model.pooling: expected 'mean' or 'cls', found 'max'"):
        ModelConfig(pooling="max")
    with pytest.raises(ValueError, match="objectives: every weight is 0"):
        ObjectivesConfig(mlm=0.0)
    with pytest.raises(ValueError, match="objectives.crop_min/crop_max"):
        ObjectivesConfig(crop_min=0.8, crop_max=0.5)
    with pytest.raises(ValueError, match="objectives.simcse: expected a weight >= 0, found -1"):
        TextConfig(objectives=ObjectivesConfig(simcse=-1))
