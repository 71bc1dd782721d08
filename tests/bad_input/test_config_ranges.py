"""Out-of-range and mistyped numeric config keys of every domain: `ssl-modal train` stops at load time (before
any data is read or anything is written) with exit code 2 and one line naming the recipe, the dotted key, the
allowed range and the value found. The rules are declared on the config dataclasses (ssl_modal/core/ranges.py)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest

from ssl_modal.cli import DOMAINS
from ssl_modal.core.ranges import check_fields, item_kind, number_kind

from .conftest import Case, params, run_case, write_csv

REPO = Path(__file__).resolve().parents[2]


def train(recipe: str, *overrides: str):
    """`ssl-modal train <recipe> --demo train.output_dir=<out> <overrides>`; a missing recipe is written as YAML."""

    def make(tmp):
        path = REPO / "recipes" / recipe
        if not path.is_file():
            path = write_csv(tmp / recipe, "domain: vectors\ndata: {file: v.csv}\n")
            return ["train", str(path), "train.output_dir={out}", *overrides]
        return ["train", str(path), "--demo", "train.output_dir={out}", *overrides]

    return make


def case(id: str, recipe: str, override: str, message: str) -> Case:
    name = recipe.replace(".", r"\.")
    return Case(id, train(recipe, override), 2, rf"(?m)^error: .*{name}: {message}$", output="run")


TEXT, AUDIO, TX, VIDEO, CLIP = (
    "text_mlm.yaml",
    "audio_fsdd.yaml",
    "transactions_sparkov.yaml",
    "video_tracking.yaml",
    "clip_flickr.yaml",
)

CASES = [
    case("text-hidden-size-0", TEXT, "model.hidden_size=0", r"model\.hidden_size: expected > 0, found 0"),
    case("text-dropout-1", TEXT, "model.dropout=1", r"model\.dropout: expected in \[0, 1\), found 1"),
    case("text-mlm-probability", TEXT, "mlm.probability=15", r"mlm\.probability: expected in \[0, 1\], found 15"),
    case("text-temperature-0", TEXT, "objectives.temperature=0", r"objectives\.temperature: expected > 0, found 0"),
    case("text-negative-weight", TEXT, "objectives.simcse=-1", r"objectives\.simcse: expected a weight >= 0, found -1"),
    case("text-max-length-2", TEXT, "model.max_length=2", r"model\.max_length: expected >= 3, found 2"),
    case("text-size-as-text", TEXT, "model.num_layers=four", r"model\.num_layers: expected an integer, found 'four'"),
    case("text-size-fraction", TEXT, "model.num_heads=2.5", r"model\.num_heads: expected an integer, found 2\.5"),
    case("text-eval-knn-0", TEXT, "eval.knn_k=0", r"eval\.knn_k: expected > 0, found 0"),
    case("text-section-not-mapping", TEXT, "model=big", r"model: expected a mapping of its keys, found 'big'"),
    case(
        "train-lr-as-word", TEXT, "train.learning_rate=fast", r"train\.learning_rate: expected a number, found 'fast'"
    ),
    case("train-negative-seed", TEXT, "train.seed=-1", r"train\.seed: expected >= 0, found -1"),
    case("audio-n-mels-negative", AUDIO, "frontend.n_mels=-40", r"frontend\.n_mels: expected > 0, found -40"),
    case(
        "audio-mask-fraction",
        AUDIO,
        "masked_frames.fraction=1.5",
        r"masked_frames\.fraction: expected in \[0, 1\], found 1\.5",
    ),
    case("audio-window-0", AUDIO, "data.window_seconds=0", r"data\.window_seconds: expected > 0, found 0"),
    case("audio-weight", AUDIO, "weights.time_shift=-0.5", r"weights\.time_shift: expected a weight >= 0, found -0\.5"),
    case("audio-label-counts", AUDIO, "eval.label_counts=[10,-1]", r"eval\.label_counts\[1\]: expected >= 0, found -1"),
    case("audio-joint-temperature", AUDIO, "joint.temperature=0", r"joint\.temperature: expected > 0, found 0"),
    case("audio-folds-1", AUDIO, "eval.speaker_folds=1", r"eval\.speaker_folds: expected >= 2, found 1"),
    case(
        "audio-view-typo", AUDIO, "views=[{name: gian}]", r"views\[0\]: unknown view step 'gian', did you mean 'gain'\?"
    ),
    case(
        "audio-eval-test-window",
        AUDIO,
        "eval.test={manifest: t.csv, window_seconds: -1}",
        r"eval\.test\.window_seconds: expected > 0, found -1",
    ),
    case("tx-hidden-0", TX, "encoder.hidden=0", r"encoder\.hidden: expected > 0, found 0"),
    case("tx-field-dim-0", TX, "encoder.field_dims={type: 0}", r"encoder\.field_dims\.type: expected > 0, found 0"),
    case(
        "tx-mask-probability-1",
        TX,
        "objectives.masked.probability=1",
        r"objectives\.masked\.probability: expected in \(0, 1\), found 1",
    ),
    case(
        "tx-one-view", TX, "objectives.contrastive.views=1", r"objectives\.contrastive\.views: expected >= 2, found 1"
    ),
    case("tx-lag-0", TX, "objectives.history.lags=[1,0]", r"objectives\.history\.lags\[1\]: expected >= 1, found 0"),
    case("tx-cv-1", TX, "eval.cv=1", r"eval\.cv: expected >= 2, found 1"),
    case("tx-threads-0", TX, "threads=0", r"threads: expected > 0, found 0"),
    Case(
        "tx-preprocess-bins-0",
        train(TX, "preprocess.amount_bins=0"),
        2,
        r"(?m)^error: preprocess\.amount_bins: expected >= 1, found 0$",
        output="run",
    ),
    case("video-width-0", VIDEO, "encoder.widths=[32,0,128]", r"encoder\.widths\[1\]: expected > 0, found 0"),
    case("video-walk-temperature", VIDEO, "walk.temperature=0", r"walk\.temperature: expected > 0, found 0"),
    case("video-topk-0", VIDEO, "propagation.topk=0", r"propagation\.topk: expected > 0, found 0"),
    case("video-one-colour", VIDEO, "colorization.num_colors=1", r"colorization\.num_colors: expected >= 2, found 1"),
    case("video-size-negative", VIDEO, "data.size=[128,-1]", r"data\.size\[1\]: expected > 0, found -1"),
    case("video-gray-p", VIDEO, "walk.gray_p=2", r"walk\.gray_p: expected in \[0, 1\], found 2"),
    case("clip-patch-0", CLIP, "model.image.patch_size=0", r"model\.image\.patch_size: expected > 0, found 0"),
    case("clip-test-fraction-1", CLIP, "data.test_fraction=1", r"data\.test_fraction: expected in \[0, 1\), found 1"),
    case(
        "clip-crop-scale",
        CLIP,
        "data.random_resized_crop=[0,1]",
        r"data\.random_resized_crop\[0\]: expected in \(0, 1\], found 0",
    ),
    case(
        "clip-text-dropout", CLIP, "model.text.dropout=-0.1", r"model\.text\.dropout: expected in \[0, 1\), found -0\.1"
    ),
    case("clip-eval-batch-0", CLIP, "eval.batch_size=0", r"eval\.batch_size: expected > 0, found 0"),
    case(
        "clip-slip-temperature",
        CLIP,
        "model.slip={method: simclr, temperature: 0}",
        r"model\.slip\.temperature: expected > 0, found 0",
    ),
    case(
        "clip-eval-test-max-groups",
        CLIP,
        "eval.test={manifest: t.csv, max_groups: 0}",
        r"eval\.test\.max_groups: expected > 0, found 0",
    ),
    case("vectors-dim-0", "v.yaml", "model.dim=0", r"model\.dim: expected > 0, found 0"),
    case("vectors-mask-prob", "v.yaml", "model.mask_prob=1.5", r"model\.mask_prob: expected in \[0, 1\], found 1\.5"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_out_of_range_config_key(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys)


# ---- every numeric key of every domain declares its range --------------------------------------------------
UNBOUNDED = {  # numeric keys where any number is meaningful
    "audio": {"time_shift.shifts"},  # shifts in frames, either direction
    "video": {"frame_order.num_clips"},  # 3 or 4, checked by the model with its own message
    "aligner": {"model.init_logit_scale", "model.max_logit_scale"},  # log-scales: any real number
}


def _numeric_keys_without_rule(cls: type, where: str = "") -> list[str]:
    hints, out = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        tp, path = hints[f.name], f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out += _numeric_keys_without_rule(tp, path)
        elif (number_kind(tp) or item_kind(tp)) and "range" not in f.metadata:
            out.append(path)
    return out


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_numeric_key_declares_a_range_and_the_defaults_meet_it(domain):
    config = importlib.import_module(f"ssl_modal.{domain}.recipe").Config
    missing = set(_numeric_keys_without_rule(config)) - UNBOUNDED.get(domain, set())
    assert not missing, f"declare a range (ssl_modal.core.ranges, e.g. positive(...)) for {sorted(missing)}"
    assert UNBOUNDED.get(domain, set()) <= set(_numeric_keys_without_rule(config)), "UNBOUNDED lists a ruled key"
    check_fields(config())
