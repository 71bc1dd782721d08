"""One way for every domain to declare its augmented views: a list of named steps in the recipe.

    model:
      views:                       # applied independently to make each of the two views
        - {name: time_crop, min_scale: 0.6}
        - {name: gain, p: 0.8, max_db: 6}

A domain keeps a registry `{name: callable(**params) -> step}`; each step is `step(batch, generator) -> batch`
and draws its randomness from `generator` only (reproducible, resumable). `p` (default 1) is the probability
that a step is applied to an example batch. `build_pipeline` checks names and parameters and says which is wrong.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch

from .config import ConfigError, _suggest

Step = Callable[[dict, torch.Generator], dict]


class RandomApply:
    """Apply `step` with probability `p` (one draw per call from the generator)."""

    def __init__(self, step: Step, p: float) -> None:
        self.step, self.p = step, p

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        if torch.rand((), generator=generator, device=generator.device).item() < self.p:
            return self.step(batch, generator)
        return batch

    def __repr__(self) -> str:
        return f"RandomApply({self.step!r}, p={self.p})"


class Pipeline:
    """Steps applied in order."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        for step in self.steps:
            batch = step(batch, generator)
        return batch

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"


class TwoViews:
    """`views(batch, generator) -> (view_a, view_b)`: the same pipeline drawn twice, independently."""

    def __init__(self, pipeline_a: Step, pipeline_b: Step | None = None) -> None:
        self.pipeline_a = pipeline_a
        self.pipeline_b = pipeline_b or pipeline_a

    def __call__(self, batch: dict, generator: torch.Generator) -> tuple[dict, dict]:
        return self.pipeline_a(dict(batch), generator), self.pipeline_b(dict(batch), generator)


def build_pipeline(
    specs: Sequence[Mapping], registry: Mapping[str, Callable[..., Step]], where: str = "model.views"
) -> Pipeline:
    """A Pipeline from `[{name: ..., p: ..., **params}, ...]`; ConfigError naming the step otherwise."""
    steps: list[Step] = []
    for i, spec in enumerate(specs or []):
        key = f"{where}[{i}]"
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(
                f"{key}: expected a mapping with a 'name' (one of {', '.join(sorted(registry))}), found {spec!r}"
            )
        params = dict(spec)
        name = params.pop("name")
        p = float(params.pop("p", 1.0))
        if name not in registry:
            raise ConfigError(f"{key}: unknown view step '{name}'{_suggest(str(name), list(registry))}")
        factory = registry[name]
        accepted = inspect.signature(factory).parameters
        if not any(a.kind is inspect.Parameter.VAR_KEYWORD for a in accepted.values()):
            for param in params:
                if param not in accepted:
                    raise ConfigError(f"{key} ({name}): unknown parameter '{param}'{_suggest(param, list(accepted))}")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{key} ({name}): p must be a probability in [0, 1], found {p}")
        try:
            step = factory(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({name}): {exc}") from None
        steps.append(step if p >= 1.0 else RandomApply(step, p))
    return Pipeline(steps)
