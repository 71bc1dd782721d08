"""One scheme for evaluating on separate data, the same in every domain: a recipe's `eval:` section.

    data:                        # what pretraining reads
      manifest: train.csv
    eval:
      train: {manifest: probe_train.csv}   # the probe (and fine-tuning) learns here
      test:  {manifest: probe_test.csv}    # ... and is scored here
      label: label                          # the label column

`eval.train` and `eval.test` take the same keys as `data:` and inherit every key they do not set from it.
Leave `eval.train` out to probe on `data:` itself; leave both out for the domain's own split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from .config import ConfigError, from_dict, merge, to_dict

D = TypeVar("D")


@dataclass
class EvalData:
    """A recipe's `eval:` section (see the module docstring)."""

    train: dict | None = None
    test: dict | None = None
    label: str = "label"

    def __post_init__(self) -> None:
        for key in ("train", "test"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"eval.{key}: expected a mapping with the keys of the data: section, found {value!r}")
        if self.train is not None and self.test is None:
            raise ConfigError("eval.train is set but eval.test is not: say which data the probe is scored on")

    @property
    def separate(self) -> bool:
        """True when the recipe names its own test data."""
        return self.test is not None

    def resolve(self, data: D) -> tuple[D, D | None]:
        """(probe-training data config, test data config or None): each section merged over `data`."""
        return _merged(data, self.train, "eval.train"), (
            _merged(data, self.test, "eval.test") if self.test is not None else None
        )


def _merged(data: Any, section: dict | None, where: str) -> Any:
    if section is None:
        return data
    return from_dict(type(data), merge(to_dict(data), section), where)
