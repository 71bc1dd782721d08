"""Probe embeddings: length-sorted encoding gives rows in input order, and the feature cache is keyed by the
weights and the texts (a changed model misses, an unchanged one reads back without encoding)."""

import numpy as np
import pytest
import torch

import ssl_modal.text.features as features
from ssl_modal.core.export import encode
from ssl_modal.text import build_text_model

from .conftest import tiny_model_config


def test_encode_sorted_matches_plain_encode_and_caches(tmp_path, small_tokenizer, monkeypatch):
    torch.manual_seed(0)
    tiny_model = build_text_model(tiny_model_config(small_tokenizer))
    texts = ["a much longer text than the others here", "short", "a middle one", "x"] * 3
    plain = encode(tiny_model, texts, 4)
    monkeypatch.setattr(features, "CHUNK", 5)
    cache = tmp_path / "features"
    first = features.encode_sorted(tiny_model, texts, 4, cache)
    np.testing.assert_allclose(first, plain, atol=1e-5)
    assert len(list(cache.glob("*.npy"))) == 3  # 12 texts in chunks of 5

    calls = []
    monkeypatch.setattr(features, "encode", lambda *a, **k: calls.append(a) or encode(*a, **k))
    np.testing.assert_array_equal(features.encode_sorted(tiny_model, texts, 4, cache), first)
    assert calls == []  # every chunk read back
    features.encode_sorted(tiny_model, texts[:3] + ["y"] + texts[4:], 4, cache)  # same length, same place
    assert len(calls) == 1  # only the chunk holding the changed text is embedded again

    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.5)
    calls.clear()
    changed = features.encode_sorted(tiny_model, texts, 4, cache)
    assert len(calls) == 3 and not np.allclose(changed, first)  # other weights: no stale read


def test_a_prefix_shares_the_cached_windows(tmp_path, small_tokenizer, monkeypatch):
    # The probes' first N training texts and the corpus mined for objectives.neighbour share their windows.
    torch.manual_seed(0)
    tiny_model = build_text_model(tiny_model_config(small_tokenizer))
    texts = [f"text number {i} " + "word " * (i % 4) for i in range(12)]
    monkeypatch.setattr(features, "CHUNK", 4)
    cache = tmp_path / "features"
    full = features.encode_sorted(tiny_model, texts, 3, cache)
    calls = []
    monkeypatch.setattr(features, "encode", lambda *a, **k: calls.append(a) or encode(*a, **k))
    prefix = features.encode_sorted(tiny_model, texts[:9], 3, cache)
    assert len(calls) == 1 and len(calls[0][1]) == 1  # windows [0:4], [4:8] read back; only text 8 embedded
    np.testing.assert_allclose(prefix, full[:9], atol=1e-5)


def test_fingerprint_ignores_the_mlm_head(small_tokenizer):
    model = build_text_model(tiny_model_config(small_tokenizer))
    before = features.model_fingerprint(model)
    with torch.no_grad():
        model.encoder.mlm.cls.predictions.transform.dense.weight.add_(1.0)  # the head only: same embeddings
    assert features.model_fingerprint(model) == before


def test_fingerprint_ignores_objective_heads(small_tokenizer):
    config = tiny_model_config(small_tokenizer)
    config["objectives"] = {"mlm": 1.0, "lexical": 1.0, "lexical_dims": 4}
    model = build_text_model(config)
    before = features.model_fingerprint(model)
    with torch.no_grad():
        model.objectives["lexical"].head.weight.add_(1.0)  # drawn from the run's seed; not used by embeddings
    assert features.model_fingerprint(model) == before
    with torch.no_grad():
        model.encoder.mlm.bert.embeddings.word_embeddings.weight.add_(1.0)
    assert features.model_fingerprint(model) != before
    with torch.no_grad():
        model.encoder.mlm.bert.encoder.layer[0].output.dense.bias.add_(1.0)
    assert features.model_fingerprint(model) != before


def test_bf16_embeddings_keep_row_order_and_their_own_cache_keys(tmp_path, small_tokenizer, monkeypatch):
    torch.manual_seed(0)
    tiny_model = build_text_model(tiny_model_config(small_tokenizer))
    texts = [f"text {i} " + "word " * (i % 5) for i in range(10)]
    cache = tmp_path / "features"
    fp32 = features.encode_sorted(tiny_model, texts, 3, cache)
    bf16 = features.encode_sorted(tiny_model, texts, 3, cache, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # computed in bf16, not the fp32 chunk read back
    cos = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cos.min() > 0.99  # same rows, same order
    assert len(list(cache.glob("*.npy"))) == 2  # one chunk per precision
    with pytest.raises(ValueError, match="precision"):
        features.encode_sorted(tiny_model, texts, 3, precision="fp16")


def test_embed_precision_resolves_auto(small_tokenizer, monkeypatch):
    import ssl_modal.core.precision as precision

    model = build_text_model(tiny_model_config(small_tokenizer))
    assert features.embed_precision("no", model) == "no"
    assert features.embed_precision("bf16", model) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: False)
    assert features.embed_precision("auto", model) == "no"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: True)
    assert features.embed_precision("auto", model) == "bf16"
