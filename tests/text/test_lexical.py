"""`objectives.lexical`: LSA targets of the pretraining texts, and the cosine regression loss."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import TruncatedSVD

from ssl_modal.text import build_text_model
from ssl_modal.text.lexical import LexicalRegression, lsa_targets
from ssl_modal.text.neighbours import tfidf_vectors

from .conftest import tiny_model_config


def test_lsa_targets_are_unit_rows_of_the_corpus_svd(sample_texts):
    texts = sample_texts[:200]
    targets = lsa_targets(texts, 16, seed=0)
    assert targets.shape == (200, 16) and targets.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    reduced = TruncatedSVD(16, random_state=0).fit_transform(tfidf_vectors(texts))
    np.testing.assert_allclose(targets, reduced / np.linalg.norm(reduced, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="lexical_dims must be in"):
        lsa_targets(texts[:40], 5000)


def test_loss_matches_a_hand_computation(small_tokenizer, sample_texts):
    config = tiny_model_config(small_tokenizer)
    config["objectives"] = {"mlm": 0.0, "lexical": 1.0, "lexical_dims": 8}
    torch.manual_seed(0)
    model = build_text_model(config).eval()
    objective = model.objectives["lexical"]
    assert isinstance(objective, LexicalRegression) and objective.head.weight.shape == (8, 64)
    targets = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    batch = {**model.collate(sample_texts[:4]), "lexical_target": targets}
    with torch.no_grad():
        out = model(batch)
        z = objective.head(model.encoder.sentences(batch)).numpy()
    t = targets.numpy()
    cosine = (z * t).sum(1) / np.linalg.norm(z, axis=1) / np.linalg.norm(t, axis=1)
    assert out["loss"].item() == pytest.approx(1 - cosine.mean(), abs=1e-5)
    assert out["lexical/cosine"].item() == pytest.approx(cosine.mean(), abs=1e-5)
    given = torch.randn(4, 64)  # pooled vectors an earlier objective left in the batch are reused
    with torch.no_grad():
        reused = objective(model.encoder, {**batch, "sentence_views": (given, given)})["loss"].item()
        expected = 1 - torch.nn.functional.cosine_similarity(objective.head(given), targets).mean().item()
    assert reused == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="lexical_target"):
        objective(model.encoder, model.collate(sample_texts[:4]))
