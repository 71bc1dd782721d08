"""Recall@K against hand-computed rankings, chance against simulation, zero-shot argument checks."""

import numpy as np
import pytest

from ssl_modal.aligner.evaluate import RetrievalTable, chance_recall, recall_at_k, zero_shot


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


def test_zero_shot_rejects_templates_without_placeholder():
    with pytest.raises(ValueError, match="must contain '\\{\\}'"):
        zero_shot(None, ["x.png"], ["dog"], ["a photo"])
    with pytest.raises(ValueError, match="at least one class name"):
        zero_shot(None, ["x.png"], [], ["a {}"])


def test_table_prints_every_row_and_dashes_for_missing_values():
    table = RetrievalTable({"chance": {"i2t_R@1": 0.05}, "trained": {"i2t_R@1": 0.2, "zero_shot_acc": 0.5}}, 20, 100)
    text = str(table)
    assert "chance" in text and "0.200" in text and "-" in text and "20 held-out images, 100 captions" in text


def test_recall_needs_a_caption_for_every_image():
    with pytest.raises(ValueError, match=r"images \[1\] have no caption"):
        recall_at_k(np.eye(2), np.eye(2)[:1], np.array([0]))
