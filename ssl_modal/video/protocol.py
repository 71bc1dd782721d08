"""Sequence-disjoint evaluation: pretrain on some DAVIS sequences, measure J&F on the others, swap, pool.

With `data.folds` = [[names...], [names...], ...], fold k's sequences are evaluated by a model pretrained on
the videos of every other fold (`data.fold_videos` with `{sequence}` filled in) plus `data.train_videos` /
`data.train_images`, which must not contain any evaluated sequence (checked by file or folder name). The
propagation settings are chosen per fold on its *training* sequences (`propagation.candidates`) and then
used for every method on the unseen ones. The pooled table has each sequence once, always unseen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from ssl_modal.video.config import PropagationConfig, VideoConfig
from ssl_modal.video.data import resolve_videos
from ssl_modal.video.report import TrackingTable

log = logging.getLogger("ssl_modal")


def fold_config(cfg: VideoConfig, k: int) -> tuple[VideoConfig, list[str], list[str]]:
    """(config of fold k's pretraining run, its training sequences, its evaluated sequences)."""
    folds = cfg.data.folds
    test = list(folds[k])
    train_names = [n for j, f in enumerate(folds) if j != k for n in f]
    videos = [pattern.format(sequence=n) for n in train_names for pattern in cfg.data.fold_videos]
    data = dataclasses.replace(cfg.data, train_videos=videos + list(cfg.data.train_videos))
    train = dataclasses.replace(cfg.train, output_dir=str(Path(cfg.train.output_dir) / f"fold{k}"))
    return dataclasses.replace(cfg, data=data, train=train), train_names, test


def check_disjoint(patterns: list[str], evaluated: list[str]) -> None:
    """Raise if a pretraining video or frame folder is named like an evaluated sequence."""
    paths, _ = resolve_videos(patterns)
    for path in paths:
        name = path.name if path.is_dir() else path.stem
        if name in evaluated:
            raise ValueError(
                f"{path}: pretraining video of evaluated sequence '{name}'; the sequence-disjoint "
                "protocol must never pretrain on the frames it evaluates (check data.train_videos)"
            )


SELECTION_KEYS = {"candidates", "select_by", "lab_weights"}  # how settings are chosen, not settings


def candidates(p: PropagationConfig) -> list[PropagationConfig]:
    fields = {f.name for f in dataclasses.fields(PropagationConfig)} - SELECTION_KEYS
    out = []
    for c in p.candidates or [{}]:
        unknown = set(c) - fields
        if unknown:
            raise ValueError(
                f"propagation.candidates: unknown key(s) {sorted(unknown)}, expected some of {sorted(fields)}"
            )
        out.append(dataclasses.replace(p, **c, candidates=[]))
    return out


def settings_of(p: PropagationConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(p).items() if k not in SELECTION_KEYS}


def choose_propagation(cfg: VideoConfig, model, names: list[str]) -> tuple[PropagationConfig, list[dict]]:
    """The candidate with the best mean J&F of `propagation.select_by` (raw-Lab, SSL or both) on `names` (the
    training sequences); then, with `propagation.lab_weights`, the Lab mix weight the SSL row does best with."""
    options = candidates(cfg.propagation)
    chosen_by = list(cfg.propagation.select_by)
    if len(options) > 1 and (not chosen_by or set(chosen_by) - {"raw-Lab", "SSL"}):
        raise ValueError(f"propagation.select_by: expected some of ['raw-Lab', 'SSL'], found {chosen_by}")
    tried: list[dict] = []
    best = best_of(cfg, model, names, options, chosen_by, tried) if len(options) > 1 else options[0]
    if cfg.propagation.lab_weights:
        mixed = [dataclasses.replace(best, lab_weight=w) for w in cfg.propagation.lab_weights]
        best = best_of(cfg, model, names, mixed, ["SSL"], tried)
    return best, tried


def best_of(
    cfg: VideoConfig, model, names: list[str], options: list[PropagationConfig], chosen_by: list[str], tried: list
) -> PropagationConfig:
    """The option with the best mean J&F of the `chosen_by` rows on `names`; each result is appended to `tried`."""
    from ssl_modal.video.recipe import evaluate_settings, tracking_methods

    def methods_for(p: PropagationConfig) -> dict:
        return {k: v for k, v in tracking_methods(model, p, cfg.train.seed + 1).items() if k in chosen_by}

    scores = []
    for p, table in zip(options, evaluate_settings(cfg, model, names, options, methods_for), strict=True):
        overall = table.overall()
        scores.append(float(np.mean([overall[m]["J&F"] for m in chosen_by])))
        tried.append(
            {"settings": settings_of(p), **{f"{m} J&F": overall[m]["J&F"] for m in chosen_by}, "score": scores[-1]}
        )
        log.info("propagation on training sequences: %s", tried[-1])
    return options[int(np.argmax(scores))]


def pooled(tables: list[TrackingTable]) -> TrackingTable:
    out = TrackingTable(tables[0].methods, tables[0].kind)
    for t in tables:
        out.scores.update(t.scores)
        for m in out.methods:
            out.speed[m] += t.speed[m]
        out.overlays += t.overlays
    return out


def run_folds(cfg: VideoConfig, title: str) -> TrackingTable:
    """Pretrain one model per fold, choose propagation on its training sequences, evaluate the unseen fold;
    print each fold and the pooled unseen-sequence table; write `<output_dir>/tracking_unseen.json`."""
    from ssl_modal.core.export import load_model
    from ssl_modal.video.recipe import evaluate_tracking, train

    candidates(cfg.propagation)  # a typo in the candidates fails now, not after training
    tables, summary = [], []
    for k in range(len(cfg.data.folds)):
        fcfg, train_names, test_names = fold_config(cfg, k)
        saved = Path(fcfg.train.output_dir) / "fold.json"
        if cfg.eval.only_fold is not None and k != cfg.eval.only_fold:
            if saved.is_file():
                summary.append(json.loads(saved.read_text(encoding="utf-8")))
                tables.append(TrackingTable.from_dict(summary[-1]["table"]))
            continue
        check_disjoint(fcfg.data.train_videos, test_names)
        start = time.perf_counter()
        result = train(fcfg)
        trained = time.perf_counter()
        model = load_model(result.checkpoint)
        p, tried = choose_propagation(fcfg, model, train_names)
        chosen = time.perf_counter()
        table = evaluate_tracking(fcfg, model, Path(fcfg.train.output_dir) / "overlays", test_names, p)
        done = time.perf_counter()
        settings = settings_of(p)
        print(
            f"\nfold {k}: pretrained on {train_names} ({trained - start:.0f} s), propagation chosen on them "
            f"({chosen - trained:.0f} s): {settings}; unseen sequences {test_names} ({done - chosen:.0f} s):"
        )
        print(table)
        tables.append(table)
        summary.append(
            {
                "fold": k,
                "train_sequences": train_names,
                "test_sequences": test_names,
                "propagation": settings,
                "candidates": tried,
                "pretrain_s": trained - start,
                "select_s": chosen - trained,
                "eval_s": done - chosen,
                "checkpoint": str(result.checkpoint),
                "table": table.to_dict(),
            }
        )
        saved.write_text(json.dumps(summary[-1], indent=1) + "\n", encoding="utf-8")
    if len(tables) < len(cfg.data.folds):
        print(
            f"\n{len(tables)} of {len(cfg.data.folds)} folds have results; run the others (eval.only_fold) "
            "for the pooled unseen-sequence table"
        )
        return tables[-1]
    table = pooled(tables)
    print(f"\n{title}: every sequence unseen in pretraining ({len(tables)} folds pooled):")
    print(table)
    weights = [f["propagation"].get("lab_weight", 0.0) for f in summary]
    if any(weights):
        print(
            f"random-init and SSL rows: the encoder's features with pooled Lab mixed in, lab_weight per fold {weights}"
        )
    out = Path(cfg.train.output_dir) / "tracking_unseen.json"
    out.write_text(json.dumps({"overall": table.overall(), "folds": summary}, indent=1) + "\n", encoding="utf-8")
    print(f"written: {out}")
    return table


def evaluate_folds(cfg: VideoConfig) -> TrackingTable:
    """Re-evaluate trained folds: each `<output_dir>/fold<k>` model on its unseen sequences, with the propagation
    saved in its fold.json (else `propagation` as set); the pooled table."""
    from ssl_modal.core.export import load_model
    from ssl_modal.video.recipe import evaluate_tracking

    tables = []
    for k in range(len(cfg.data.folds)):
        fcfg, _, test_names = fold_config(cfg, k)
        saved = Path(fcfg.train.output_dir) / "fold.json"
        p = candidates(dataclasses.replace(cfg.propagation, candidates=[]))[0]
        if saved.is_file():
            p = dataclasses.replace(p, **json.loads(saved.read_text(encoding="utf-8"))["propagation"])
        tables.append(evaluate_tracking(fcfg, load_model(fcfg.train.output_dir), None, test_names, p))
    return pooled(tables)
