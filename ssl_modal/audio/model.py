"""The audio encoder (log-mel frontend -> conv subsampling -> Transformer) and its checkpoint builder.

Batches are {"wave": (B, S) float32 zero-padded mono samples, "lengths": (B,) samples}. Every stage
respects the padding: the frontend's frames do not see padding (see frontend.py), padded positions
are zeroed after each convolution, attention ignores them, and `pooled` is the mean over real tokens;
a clip's embedding does not change when it is padded (tested).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor, nn

from ssl_modal.audio.cnn import ConvAudioEncoder, pool, pooled_dim, token_dim
from ssl_modal.audio.frontend import LogMel, sinusoidal_positions
from ssl_modal.audio.objectives import MaskedFrames, TimeShift
from ssl_modal.audio.views import audio_views
from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, SSLModel

BUILDER = "ssl_modal.audio.model:build_audio_model"
OBJECTIVES = ("masked_frames", "time_shift", "joint", "neighbour")
FEATURES_KEY = "logmel"  # where `AudioEncoder.features` caches a batch's log-mel


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions: (B, T, D), (B, T) bool -> (B, D); zeros for a row without any."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AudioEncoder(Encoder):
    """Log-mel frontend + `conv_layers` stride-2 Conv1d (GELU) + pre-norm Transformer; tokens at
    1 / 2**conv_layers of the frame rate; pooled = masked mean of the final tokens (or `encoder.pooling`)."""

    def __init__(self, frontend: dict, encoder: dict, stats: dict | None = None):
        super().__init__()
        stats = stats or {}
        self.frontend = LogMel(**frontend, mean=stats.get("mean"), std=stats.get("std"))
        dim, n_conv = int(encoder["dim"]), int(encoder["conv_layers"])
        self.dim, self.subsample = dim, 2**n_conv
        self.convs = nn.ModuleList(
            nn.Conv1d(frontend["n_mels"] if i == 0 else dim, dim, kernel_size=3, stride=2, padding=1)
            for i in range(n_conv)
        )
        self.input_proj = nn.Linear(frontend["n_mels"], dim) if n_conv == 0 else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            dim,
            encoder["num_heads"],
            encoder["ff_dim"],
            encoder["dropout"],
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, encoder["num_layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.pooling, self.segments = encoder.get("pooling", "mean"), int(encoder.get("segments", 3))

    def features(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Normalised log-mel (B, T, n_mels) and frame mask (B, T); computed once per batch and cached
        in `batch["logmel"]`, so objectives sharing a batch share the frontend's work."""
        if FEATURES_KEY not in batch:
            for key in ("wave", "lengths"):
                if key not in batch:
                    raise KeyError(f"audio batch has no '{key}' (keys: {sorted(batch)}); build it with audio_collate")
            batch[FEATURES_KEY] = self.frontend(batch["wave"], batch["lengths"])
        return batch[FEATURES_KEY]

    def encode_frames(self, x: Tensor, frame_mask: Tensor) -> EncoderOutput:
        """Encode normalised log-mel frames (B, T, n_mels) with mask (B, T)."""
        mask = frame_mask
        h = x.transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            h = nn.functional.gelu(conv(h))
            lengths = (mask.sum(1) + 1) // 2  # ceil(n / 2): frames of a stride-2, kernel-3, padding-1 conv
            mask = torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None]
            h = h * mask[:, None, :].to(h.dtype)
        h = self.input_proj(h.transpose(1, 2))
        h = h + sinusoidal_positions(h.shape[1], self.dim, h.device).to(h.dtype)
        pad = ~mask
        empty = ~mask.any(1)
        if empty.any():  # attention needs one key: rows without real frames attend to their first slot
            pad = pad.clone()
            pad[empty, 0] = False
        tokens = self.norm(self.transformer(h, src_key_padding_mask=pad))
        tokens = tokens * mask[..., None].to(tokens.dtype)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool(tokens, mask, self.pooling, self.segments))

    def forward(self, batch: dict) -> EncoderOutput:
        return self.encode_frames(*self.features(batch))


def _wave_of(item, i: int) -> np.ndarray:
    if isinstance(item, dict) or hasattr(item, "keys"):
        if "wave" not in item.keys():
            raise KeyError(
                f"audio item {i} has no 'wave' (keys: {sorted(item.keys())[:10]}); "
                "audio files are read by ssl_modal.audio.encode_manifest / export_manifest (`ssl-modal embed` "
                "reads tables, not audio)"
            )
        item = item["wave"]
    wave = item.numpy() if isinstance(item, Tensor) else np.asarray(item, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"audio item {i}: expected mono samples of shape (n,), found shape {wave.shape}")
    if wave.size == 0:
        raise ValueError(f"audio item {i}: has no samples")
    return wave


def audio_collate(items: list) -> dict[str, Tensor]:
    """Zero-pad mono waveforms (arrays, tensors, or dicts with "wave") into {"wave", "lengths"}; items' mined
    partners ("neighbour_waves"), cluster ids ("cluster") and group ids ("group", "neighbour_groups") become
    "pair_wave"/"pair_lengths", "cluster" and "group"/"pair_group"."""
    if not items:
        raise ValueError("cannot collate an empty list of audio items")
    waves = [_wave_of(item, i) for i, item in enumerate(items)]
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
    batch = {"wave": out, "lengths": lengths}
    if isinstance(items[0], dict) and "cluster" in items[0]:  # neighbour.clusters: label-free cluster ids
        batch["cluster"] = torch.tensor([int(item["cluster"]) for item in items], dtype=torch.long)
    if isinstance(items[0], dict) and "group" in items[0]:  # neighbour.cluster_positives: cross_group
        batch["group"] = torch.tensor([int(item["group"]) for item in items], dtype=torch.long)
    if isinstance(items[0], dict) and "neighbour_groups" in items[0]:
        batch["pair_group"] = torch.tensor([list(item["neighbour_groups"]) for item in items], dtype=torch.long)
    if isinstance(items[0], dict) and "neighbour_waves" in items[0]:  # weights.neighbour: (B, k, S) partners
        pairs = [item["neighbour_waves"] for item in items]
        batch["pair_lengths"] = torch.tensor([[len(w) for w in row] for row in pairs], dtype=torch.long)
        batch["pair_wave"] = torch.zeros(*batch["pair_lengths"].shape, int(batch["pair_lengths"].max()))
        for i, row in enumerate(pairs):
            for j, w in enumerate(row):
                batch["pair_wave"][i, j, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
    return batch


def audio_model_config(cfg, stats: dict | None = None) -> dict:
    """The plain dict `build_audio_model` takes, from an `AudioConfig` and the frontend statistics."""
    return {
        "frontend": asdict(cfg.frontend),
        "encoder": asdict(cfg.encoder),
        "masked_frames": asdict(cfg.masked_frames),
        "time_shift": asdict(cfg.time_shift),
        "weights": dict(cfg.weights),
        "views": [dict(v) for v in cfg.views],
        "joint": asdict(cfg.joint),
        "neighbour": asdict(cfg.neighbour),
        "stats": None if stats is None else {k: stats[k] for k in ("mean", "std")},
    }


def make_encoder(frontend: dict, encoder: dict, stats: dict | None = None) -> nn.Module:
    """The encoder named by `encoder["kind"]` (transformer when absent: checkpoints from before the choice)."""
    kind = encoder.get("kind", "transformer")
    if kind == "transformer":
        return AudioEncoder(frontend, encoder, stats)
    if kind == "cnn":
        stats = stats or {}
        logmel = LogMel(**frontend, mean=stats.get("mean"), std=stats.get("std"))
        return ConvAudioEncoder(
            logmel,
            frontend["n_mels"],
            int(encoder["dim"]),
            int(encoder.get("channels", 64)),
            float(encoder.get("dropout", 0.3)),
            encoder.get("pooling", "mean"),
            int(encoder.get("segments", 3)),
            bool(encoder.get("stack", False)),
        )
    raise ValueError(f"encoder.kind: expected 'transformer' or 'cnn', found '{kind}'")


def encoder_pooled_dim(encoder: dict, n_mels: int = 40) -> int:
    """Size of the encoder's `pooled` vector."""
    dim = int(encoder["dim"])
    if encoder.get("kind", "transformer") == "cnn":
        dim = token_dim(n_mels, dim, int(encoder.get("channels", 64)), bool(encoder.get("stack", False)))
    return pooled_dim(dim, encoder.get("pooling", "mean"), int(encoder.get("segments", 3)))


def build_audio_model(config: dict) -> SSLModel:
    """The checkpoint builder: encoder + the objectives with a non-zero weight in config["weights"]."""
    missing = {"frontend", "encoder", "masked_frames", "time_shift", "weights"} - set(config)
    if missing:
        raise ValueError(f"audio model config lacks {sorted(missing)}; found keys {sorted(config)}")
    weights = {k: float(v) for k, v in config["weights"].items()}
    unknown = set(weights) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"weights: unknown objective(s) {sorted(unknown)}; expected some of {', '.join(OBJECTIVES)}")
    encoder = make_encoder(config["frontend"], config["encoder"], config.get("stats"))
    objectives = {}
    if weights.get("masked_frames", 0.0):
        objectives["masked_frames"] = MaskedFrames(
            getattr(encoder, "token_dim", encoder.dim),
            config["frontend"]["n_mels"],
            encoder.subsample,
            **config["masked_frames"],
        )
    if weights.get("time_shift", 0.0):
        pooled = encoder_pooled_dim(config["encoder"], config["frontend"]["n_mels"])
        objectives["time_shift"] = TimeShift(pooled, **config["time_shift"])
    if weights.get("joint", 0.0):
        from ssl_modal.core.joint import JointConfig, JointEmbedding

        views = audio_views(config.get("views") or [], encoder.frontend, config["frontend"]["sample_rate"])
        pooled = encoder_pooled_dim(config["encoder"], config["frontend"]["n_mels"])
        objectives["joint"] = JointEmbedding(JointConfig(**config.get("joint", {})), pooled, views, encoder=encoder)
    if weights.get("neighbour", 0.0):
        from ssl_modal.audio.neighbours import NeighbourViews
        from ssl_modal.core.joint import JointConfig, JointEmbedding

        joint = dict(config.get("joint", {}))
        joint["method"] = (config.get("neighbour") or {}).get("method") or joint.get("method", "byol")
        views = audio_views(config.get("views") or [], encoder.frontend, config["frontend"]["sample_rate"])
        pooled = encoder_pooled_dim(config["encoder"], config["frontend"]["n_mels"])
        neighbour = config.get("neighbour") or {}
        labels_key = "cluster" if neighbour.get("clusters") else None  # sup_con over label-free clusters
        cross = labels_key and neighbour.get("cluster_positives", "all") == "cross_group"
        groups_key = "group" if cross else None  # positives only from other speakers
        head = {"num_labels": int(neighbour.get("clusters") or 0), "label_weight": neighbour.get("cluster_head", 0.0)}
        if neighbour.get("remine_at"):  # re-mines the pairs mid-run (ssl_modal/audio/remine.py)
            from ssl_modal.audio.remine import RemineEmbedding

            objectives["neighbour"] = RemineEmbedding(
                JointConfig(**joint),
                pooled,
                NeighbourViews(views.pipeline_a),
                encoder,
                neighbour,
                labels_key,
                groups_key,
                **head,
            )
        else:
            objectives["neighbour"] = JointEmbedding(
                JointConfig(**joint),
                pooled,
                NeighbourViews(views.pipeline_a),
                encoder=encoder,
                labels_key=labels_key,
                groups_key=groups_key,
                **head,
            )
    if not objectives:
        raise ValueError(f"weights: every objective has weight 0 ({weights}); give at least one a weight > 0")
    return SSLModel(
        encoder,
        objectives,
        {k: weights[k] for k in objectives},
        spec=ModelSpec(builder=BUILDER, config=config, kind="audio-logmel"),
        collate=audio_collate,
    )
