"""bench/common.py: the speed-ratio helper every throughput benchmark reports its targets with."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import speed_ratios  # noqa: E402


def test_speed_ratio_is_ratio_of_median_seconds_per_step_with_per_round_ratios():
    samples = {"ours": [1.0, 2.0, 1.5], "ref": [3.0, 3.0, 6.0]}
    ratios = speed_ratios({"ours/ref": 2.0}, samples)["ours/ref"]
    assert ratios["value"] == pytest.approx(3.0 / 1.5)
    assert ratios["met"] is True
    assert ratios["per_round"] == pytest.approx([3.0, 1.5, 4.0])
    missed = speed_ratios({"ours/ref": 2.5}, samples)["ours/ref"]
    assert missed["met"] is False
