"""finetune: a copy of the encoder plus a linear head, trained with the shared Trainer, scored like `probe`."""

import tempfile

import numpy as np
import pytest
import torch

from ssl_modal.core.evaluate import ProbeTable, probe_split
from ssl_modal.core.finetune import finetune
from ssl_modal.vectors import build_vector_model


def blobs(n, seed, dim=16):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(3, dim)) * 2
    y = rng.integers(0, 3, n)
    x = (centres[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return list(x), np.array(["a", "b", "c"])[y]


def test_finetune_learns_labels_and_leaves_the_model_untouched(tmp_path):
    torch.manual_seed(0)
    model = build_vector_model({"dim": 16})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_train, y_train = blobs(240, 0)
    x_test, y_test = blobs(120, 1)
    result = finetune(
        model,
        x_train,
        y_train,
        test_examples=x_test,
        test_labels=y_test,
        max_steps=150,
        batch_size=32,
        learning_rate=1e-2,
        eval_every=10,
        patience=3,
        output_dir=str(tmp_path),
        name="vectors fine-tuned",
    )
    assert result.linear_acc > 0.9 and result.knn_acc > 0.9, result
    assert (result.n_train, result.n_test, result.n_classes) == (240, 120, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "best.pt").exists()  # validation split and early stopping were used
    assert "vectors fine-tuned" in str(ProbeTable([result]))


def test_finetune_with_one_example_per_class_trains_fixed_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where finetune's own run folder goes
    model = build_vector_model({"dim": 16})
    x_train, y_train = blobs(60, 0)
    idx = [int(np.flatnonzero(y_train == c)[0]) for c in "abc"]
    x_test, y_test = blobs(60, 1)
    result = finetune(
        model,
        [x_train[i] for i in idx],
        y_train[idx],
        test_examples=x_test,
        test_labels=y_test,
        max_steps=20,
        batch_size=8,
    )
    assert result.n_train == 3 and 0.0 <= result.linear_acc <= 1.0
    assert list(tmp_path.iterdir()) == []  # no output_dir given: its checkpoints were removed afterwards


def test_finetune_errors_name_the_problem():
    model = build_vector_model({"dim": 16})
    x, y = blobs(30, 0)
    with pytest.raises(ValueError, match="30 training examples but 29 labels"):
        finetune(model, x, y[:29], test_examples=x, test_labels=y)
    with pytest.raises(ValueError, match=r"test labels \['z'\] never occur"):
        finetune(model, x, y, test_examples=x[:1], test_labels=["z"])


def test_probe_split_trains_on_one_set_and_tests_on_the_other():
    x_train, y_train = blobs(200, 0)
    x_test, y_test = blobs(50, 1)
    result = probe_split(np.stack(x_train), y_train, np.stack(x_test), y_test, name="split")
    assert (result.n_train, result.n_test, result.folds) == (200, 50, 1)
    assert result.linear_acc > 0.9
