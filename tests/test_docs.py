"""The worked example in docs/adding_a_domain.md runs as written."""

import re
from pathlib import Path

import numpy as np

from ssl_modal import TrainConfig, Trainer, encode

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_domain.md"


def test_adding_a_domain_example_trains_and_encodes(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 32, "the example promises about 30 lines"
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)
    model = namespace["build_model"]({"dim": 8, "embed_dim": 4})
    rows = list(np.random.default_rng(0).normal(size=(128, 8)).astype(np.float32))
    result = Trainer(
        TrainConfig(
            output_dir=str(tmp_path),
            max_steps=30,
            batch_size=32,
            learning_rate=3e-3,
            progress=False,
            tensorboard=False,
            log_every=10,
        )
    ).fit(model, rows, namespace["collate"])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert encode(model, rows).shape == (128, 4)


def test_adding_a_domain_range_example_is_checked_by_the_loader():
    import pytest

    from ssl_modal.core.config import ConfigError, from_dict

    block = next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if "core.ranges" in b)
    namespace: dict = {"__name__": "doc_example"}
    exec(compile(block, str(DOC), "exec"), namespace)
    cls = namespace["ModelConfig"]
    assert from_dict(cls, {"dim": "32", "widths": [8]}).dim == 32
    with pytest.raises(ConfigError, match=r"^model.dim: expected > 0, found 0$"):
        from_dict(cls, {"dim": 0}, "model")
    with pytest.raises(ConfigError, match=r"^model.weights.masked: expected a weight >= 0, found -1$"):
        from_dict(cls, {"weights": {"masked": -1}}, "model")
