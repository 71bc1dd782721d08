"""Recall@K against hand-computed rankings, chance against simulation, zero-shot argument checks."""

import numpy as np
import pytest
import torch

from ssl_modal.aligner import evaluate
from ssl_modal.aligner.evaluate import RetrievalTable, chance_recall, class_mentions, recall_at_k, zero_shot


def test_recall_at_k_by_hand():
    image = np.eye(3, dtype=np.float32)
    # captions 0,1 -> image 0; caption 2 -> image 1; caption 3 -> image 2. Caption 3 points at image 0.
    text = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [1, 0, 0.1]], dtype=np.float32)
    r = recall_at_k(image, text, np.array([0, 0, 1, 2]), ks=(1, 2))
    # image->text: image 0 best caption 0 (hit); image 1 best caption 2 (hit); image 2 best caption 3 (hit)
    assert r["i2t_R@1"] == 1.0
    # text->image: captions 0,1,2 hit at rank 1; caption 3 ranks image 0 first, its own image 2 second
    assert r["t2i_R@1"] == 0.75 and r["t2i_R@2"] == 1.0


def test_chance_recall_matches_simulation():
    rng = np.random.default_rng(0)
    n_images, per = 20, 5
    text_image = np.repeat(np.arange(n_images), per)
    sims = [
        recall_at_k(rng.normal(size=(n_images, 8)), rng.normal(size=(n_images * per, 8)), text_image)
        for _ in range(200)
    ]
    chance = chance_recall(n_images, per)
    for key in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@10"):
        assert np.mean([s[key] for s in sims]) == pytest.approx(chance[key], abs=0.03)


def test_zero_shot_rejects_bad_prompt_sources():
    with pytest.raises(ValueError, match="must each contain '\\{\\}'"):
        zero_shot(None, ["x.png"], ["dog"], ["a photo"])
    with pytest.raises(ValueError, match="exactly one prompt source.*found 0 class name"):
        zero_shot(None, ["x.png"], [], ["a {}"])
    with pytest.raises(ValueError, match="templates=set, captions=set"):
        zero_shot(None, ["x.png"], ["dog"], ["a {}"], captions=["a dog"])
    with pytest.raises(ValueError, match="templates=None, captions=None"):
        zero_shot(None, ["x.png"], ["dog"])
    with pytest.raises(ValueError, match=r"none of the 2 captions names \['cat'\] without naming another"):
        zero_shot(None, ["x.png"], ["dog", "cat"], captions=["a dog", "a dog and a cat"])


def test_class_mentions_match_whole_words_and_plurals():
    named = class_mentions(["Two dogs", "the children play", "a manhole", "A MAN and a bike"], ["dog", "child", "man"])
    assert named.tolist() == [[True, False, False], [False, True, False], [False, False, False], [False, False, True]]


class _FakeModel:
    """Embeds a caption by the first of its words found in `axes` and an image by its name: enough to pin the
    class embeddings and the prior of caption prompts without training."""

    class encoder:  # noqa: N801 -- stands in for the model's encoder attribute
        @staticmethod
        def scale():
            return torch.tensor(1.0)


def test_caption_prompts_average_single_class_captions_and_add_their_prior(monkeypatch):
    axes = {"dog": [1.0, 0.0], "cat": [0.0, 1.0]}

    def texts(model, captions, batch_size=256, normalize=True):
        return np.array([next(axes[w] for w in c.split() if w in axes) for c in captions])

    def images(model, paths, batch_size=64, normalize=True):  # halfway between the classes, then one a bit closer
        return np.array([[0.7071, 0.7071], [0.6, 0.8]])

    monkeypatch.setattr(evaluate, "encode_texts", texts)
    monkeypatch.setattr(evaluate, "encode_images", images)
    corpus = ["a dog runs", "a dog sits", "a dog again", "a cat sleeps", "a dog and a cat"]  # the last names both
    predicted, probs = zero_shot(_FakeModel(), ["a.jpg", "b.jpg"], ["dog", "cat"], captions=corpus)
    # logits = cosine + log(3/4) or log(1/4): the tie goes to the commoner class; 0.8 - 0.6 < log 3 keeps dog
    expected = np.array([[0.7071 + np.log(0.75), 0.7071 + np.log(0.25)], [0.6 + np.log(0.75), 0.8 + np.log(0.25)]])
    expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert predicted.tolist() == [0, 0]
    predicted, _ = zero_shot(_FakeModel(), ["a.jpg", "b.jpg"], ["dog", "cat"], templates=["a {}"])
    assert predicted.tolist() == [0, 1]  # no prior: the tie to the first class, then the nearer one


def test_table_prints_every_row_and_dashes_for_missing_values():
    table = RetrievalTable({"chance": {"i2t_R@1": 0.05}, "trained": {"i2t_R@1": 0.2, "zero_shot_acc": 0.5}}, 20, 100)
    text = str(table)
    assert "chance" in text and "0.200" in text and "-" in text and "20 held-out images, 100 captions" in text


def test_recall_needs_a_caption_for_every_image():
    with pytest.raises(ValueError, match=r"images \[1\] have no caption"):
        recall_at_k(np.eye(2), np.eye(2)[:1], np.array([0]))
