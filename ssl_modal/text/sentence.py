"""Sentence-level contrastive objectives for text: unsupervised SimCSE and span-crop pairs.

Both encode two views of every text of the batch, pool each view to one vector per text (the encoder's
pooling, mean or [CLS]) and apply the core InfoNCE (`ssl_modal.core.joint.info_nce`, NT-Xent: each of the
2N views picks its partner among the other 2N-1) over the batch.

- `SimCSE` (Gao et al. 2021, unsupervised): the same tokens twice; the two dropout masks are the only
  noise. Needs dropout > 0 in the encoder. Works on packed batches too (pooling per text).
- `SpanCrop`: each view is [CLS] + one random contiguous span of the text + [SEP], the span covering a
  fraction in [crop_min, crop_max] of the text's tokens (drawn per text and view from the objective's
  generator). Overlapping or adjacent spans of one document are positives, as in DeCLUTR-style span pairs.
- `NeighbourPairs`: each text and its partner (one of its nearest neighbours under the starting model,
  mined before training: `ssl_modal.text.neighbours`; the batch's `pair_input_ids`) as the two views.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_modal.core.contract import Objective
from ssl_modal.core.joint import info_nce

VIEWS_KEY = "sentence_views"  # (anchor, partner) pooled vectors that `NeighbourPairs` leaves in the batch


def anchor_vectors(encoder, batch: dict) -> Tensor:
    """The batch's pooled texts: the neighbour objective's anchors when it already ran this step, else encoded."""
    views = batch.get(VIEWS_KEY)
    return views[0] if views is not None else encoder.sentences(batch)


def _contrast(a: Tensor, b: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """(loss, top-1 accuracy of finding b[i] for a[i] among all b)."""
    loss = info_nce(a.float(), b.float(), temperature)
    with torch.no_grad():
        a_n, b_n = torch.nn.functional.normalize(a.float(), dim=-1), torch.nn.functional.normalize(b.float(), dim=-1)
        target = torch.arange(a.shape[0], device=a.device)
        accuracy = ((a_n @ b_n.T).argmax(-1) == target).float().mean()
    return loss, accuracy


class SimCSE(Objective):
    """Unsupervised SimCSE: two dropout-noised encodings of the same batch, InfoNCE between them."""

    def __init__(self, temperature: float = 0.05, count_tokens: bool = False):
        super().__init__()
        self.temperature, self.count_tokens = float(temperature), bool(count_tokens)

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        a = encoder.sentences(batch)
        b = encoder.sentences(batch)
        if a.shape[0] < 2:
            raise ValueError("simcse needs at least 2 texts per batch (in-batch negatives); raise train.batch_size")
        loss, accuracy = _contrast(a, b, self.temperature)
        out = {"loss": loss, "accuracy": accuracy}
        if self.count_tokens:
            out["real_tokens"] = batch["attention_mask"].sum().float()
        return out


def span_crops(
    input_ids: Tensor, attention_mask: Tensor, crop_min: float, crop_max: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One random contiguous span per row, kept between the row's first and last real token
    ([CLS] ... [SEP]): (B, T) -> (B, T') ids and attention mask, T' = longest crop + 2."""
    lengths = attention_mask.sum(1)  # real tokens incl. the 2 specials
    inner = (lengths - 2).clamp(min=1)
    u = torch.rand(input_ids.shape[0], generator=generator, device=input_ids.device)
    keep = (crop_min + (crop_max - crop_min) * u) * inner
    keep = keep.ceil().long().clamp(min=1).minimum(inner)
    slack = (inner - keep).clamp(min=0)
    v = torch.rand(input_ids.shape[0], generator=generator, device=input_ids.device)
    start = 1 + (v * (slack + 1).float()).floor().long().minimum(slack)
    width = int(keep.max().item()) + 2
    j = torch.arange(width, device=input_ids.device).unsqueeze(0)
    src = torch.where(j == 0, torch.zeros_like(j), start.unsqueeze(1) + j - 1)
    src = torch.where(j == keep.unsqueeze(1) + 1, (lengths - 1).unsqueeze(1), src)
    real = j <= keep.unsqueeze(1) + 1
    src = torch.where(real, src, torch.zeros_like(src)).clamp(max=input_ids.shape[1] - 1)
    ids = torch.gather(input_ids, 1, src)
    pad = input_ids[attention_mask == 0][:1]  # the batch's padding id, if it has padding
    ids = torch.where(real, ids, pad[0] if pad.numel() else torch.zeros_like(ids))
    return ids, real.long()


class SpanCrop(Objective):
    """Two random spans of each text as the views, InfoNCE between them (unpacked batches only)."""

    def __init__(
        self, temperature: float = 0.05, crop_min: float = 0.3, crop_max: float = 0.7, count_tokens: bool = False
    ):
        super().__init__()
        self.temperature, self.crop_min, self.crop_max = float(temperature), float(crop_min), float(crop_max)
        self.count_tokens = bool(count_tokens)

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        if "segment_ids" in batch:
            raise ValueError(
                "objectives.span_crop needs one text per row: set data.pack: false "
                "(or use simcse, which works on packed rows)"
            )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if ids.shape[0] < 2:
            raise ValueError("span_crop needs at least 2 texts per batch (in-batch negatives); raise train.batch_size")
        g = self.rng(ids.device)
        views = [span_crops(ids, mask, self.crop_min, self.crop_max, g) for _ in range(2)]
        a, b = (encoder.sentences({"input_ids": v, "attention_mask": m}) for v, m in views)
        loss, accuracy = _contrast(a, b, self.temperature)
        out = {"loss": loss, "accuracy": accuracy}
        if self.count_tokens:
            out["real_tokens"] = mask.sum().float()
        return out


class NeighbourPairs(Objective):
    """Each text and its mined neighbour (`pair_input_ids` in the batch) as positives, InfoNCE over the batch."""

    def __init__(self, temperature: float = 0.05, count_tokens: bool = False):
        super().__init__()
        self.temperature, self.count_tokens = float(temperature), bool(count_tokens)

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        if "pair_input_ids" not in batch:
            raise ValueError(
                "objectives.neighbour needs each text's mined partner (pair_input_ids): train through the text "
                "recipe, which mines them (ssl_modal.text.neighbours), with data.pack: false"
            )
        if batch["input_ids"].shape[0] < 2:
            raise ValueError("neighbour needs at least 2 texts per batch (in-batch negatives); raise train.batch_size")
        a = encoder.sentences(batch)
        b = encoder.sentences({"input_ids": batch["pair_input_ids"], "attention_mask": batch["pair_attention_mask"]})
        batch[VIEWS_KEY] = (a, b)  # reused by objectives.cluster and objectives.lexical
        loss, accuracy = _contrast(a, b, self.temperature)
        out = {"loss": loss, "accuracy": accuracy}
        if self.count_tokens:
            out["real_tokens"] = (batch["attention_mask"].sum() + batch["pair_attention_mask"].sum()).float()
        return out
