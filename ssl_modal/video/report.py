"""The J&F table (per sequence x method, with overall means), overlay PNGs and the loss-curve plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_modal.video.davis import Sequence, seg2bmap


class TrackingTable:
    """DAVIS J (IoU) and F (boundary) per sequence for each method; str() prints the table."""

    def __init__(self, methods: list[str], kind: str = ""):
        self.methods, self.kind = methods, kind
        self.scores: dict[str, dict[str, dict]] = {}  # sequence -> method -> {"J", "F", ...}
        self.speed: dict[str, list[float]] = {m: [] for m in methods}
        self.overlays: list[Path] = []
        self.frame_order: dict | None = None

    def add(self, sequence: str, method: str, scores: dict, fps: float, frames: int) -> None:
        self.scores.setdefault(sequence, {})[method] = {**scores, "frames": frames}
        if not math.isnan(fps):
            self.speed[method].append(fps)

    def mean(self, method: str, key: str) -> float:
        """Overall mean over sequences (the DAVIS convention: each sequence counts once)."""
        return float(np.mean([s[method][key] for s in self.scores.values()]))

    def overall(self) -> dict[str, dict[str, float]]:
        out = {}
        for m in self.methods:
            j, f = self.mean(m, "J"), self.mean(m, "F")
            out[m] = {
                "J": j,
                "F": f,
                "J&F": (j + f) / 2,
                "frames_per_s": float(np.median(self.speed[m])) if self.speed[m] else None,
            }
        return out

    def rows(self) -> tuple[list[str], list[list[str]]]:
        head = ["sequence", "frames"] + [f"{m} {k}" for m in self.methods for k in ("J", "F")]
        body = [
            [name, str(next(iter(s.values()))["frames"])] + [f"{s[m][k]:.3f}" for m in self.methods for k in "JF"]
            for name, s in self.scores.items()
        ]
        overall = self.overall()
        body.append(["mean", ""] + [f"{overall[m][k]:.3f}" for m in self.methods for k in "JF"])
        body.append(["J&F", ""] + [x for m in self.methods for x in (f"{overall[m]['J&F']:.3f}", "")])
        return head, body

    def __str__(self) -> str:
        head, body = self.rows()
        widths = [max(len(r[j]) for r in [head] + body) for j in range(len(head))]

        def fmt(r):
            return "  ".join(
                [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
            ).rstrip()

        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body]
        lines.append(
            "(J = IoU, F = DAVIS boundary F-measure: means over frames 1..T-2 of each sequence, then over "
            "sequences. copy-first = first mask copied to every frame; raw-Lab = Lab pixels average-pooled "
            f"to the feature stride; random-init = untrained encoder; SSL = the pretrained {self.kind} encoder)"
        )
        speed = {m: v["frames_per_s"] for m, v in self.overall().items() if v["frames_per_s"]}
        if speed:
            lines.append(
                "propagation frames/s (median over sequences): " + ", ".join(f"{m} {v:.1f}" for m, v in speed.items())
            )
        if self.overlays:
            lines.append(
                f"overlay PNGs of the SSL encoder's masks (red; ground-truth boundary green): "
                f"{self.overlays[0].parent}/"
            )
        if self.frame_order:
            lines.append(
                "frame-order accuracy on held-out clips: "
                + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.frame_order.items())
            )
        return "\n".join(lines)

    __repr__ = __str__

    def to_markdown(self) -> str:
        head, body = self.rows()
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

    def to_dict(self) -> dict:
        return {
            "methods": self.methods,
            "kind": self.kind,
            "overall": self.overall(),
            "sequences": self.scores,
            "frame_order": self.frame_order,
            "speed": self.speed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrackingTable:
        table = cls(d["methods"], d["kind"])
        table.scores, table.frame_order = d["sequences"], d.get("frame_order")
        table.speed.update(d.get("speed") or {})
        return table

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def overlay(frame: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """The frame with the predicted mask tinted red and the ground-truth boundary drawn green."""
    out = frame.astype(np.float32).copy()
    out[pred] = 0.5 * out[pred] + 0.5 * np.array([255, 0, 0])
    if gt is not None:
        edge = seg2bmap(gt)
        edge[1:] |= edge[:-1]
        edge[:, 1:] |= edge[:, :-1]
        out[edge] = [0, 255, 0]
    return out.astype(np.uint8)


def save_overlay(seq: Sequence, preds: np.ndarray, path: Path, count: int = 4) -> Path:
    """A horizontal strip of `count` evenly spaced frames (first and last included) with overlays, as PNG."""
    picks = np.linspace(0, len(seq.frames) - 1, min(count, len(seq.frames))).round().astype(int)
    strip = np.concatenate([overlay(seq.frames[i], preds[i], seq.masks[i]) for i in picks], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)
    return path
