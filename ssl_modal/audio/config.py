"""The audio recipe's config: one dataclass per section of `recipes/audio_fsdd.yaml`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssl_modal.core.config import ConfigError
from ssl_modal.core.joint import METHODS, JointConfig
from ssl_modal.core.ranges import (
    at_least,
    check_fields,
    dropout_rate,
    in_unit_interval,
    loss_weight,
    non_negative,
    positive,
)
from ssl_modal.core.trainer import TrainConfig


def default_views() -> list[dict]:
    """BYOL-A's mixup + random resized crop, plus speaker-changing waveform steps (ssl_modal/audio/views.py)."""
    return [
        {"name": "gain", "db": 6.0},
        {"name": "mixup", "ratio": 0.4, "p": 0.5},
        {"name": "speed", "factors": [0.9, 0.95, 1.0, 1.05, 1.1]},
        {"name": "noise", "snr_db": [10.0, 40.0], "p": 0.5},
        {"name": "vtlp", "alpha": [0.9, 1.1]},
        {"name": "crop"},
        {"name": "specaugment", "p": 0.5},
    ]


@dataclass
class FrontendConfig:
    """Log-mel frontend, computed on the training device inside the model (torchaudio MelSpectrogram)."""

    sample_rate: int = positive(8000)  # every file is resampled to this rate (torchaudio.functional.resample)
    n_fft: int = positive(256)
    win_length: int = positive(200)  # samples per analysis window (25 ms at 8 kHz)
    hop_length: int = positive(80)  # samples between frames (10 ms at 8 kHz)
    n_mels: int = positive(40)
    f_min: float = non_negative(0.0)
    f_max: float | None = positive(None)  # null: sample_rate / 2
    utterance_mean_norm: bool = False  # also subtract each clip's mean log-mel per bin (removes channel/speaker tilt)


@dataclass
class EncoderConfig:
    """`kind: transformer`: conv subsampling (each layer halves the frame rate) + Transformer over the
    subsampled frames. `kind: cnn`: BYOL-A's conv stack (3 x conv-BN-ReLU-maxpool, `channels` wide) + MLP."""

    kind: str = "transformer"  # transformer | cnn
    dim: int = positive(128)
    conv_layers: int = non_negative(2)  # subsampling factor 2 ** conv_layers
    num_layers: int = non_negative(4)
    num_heads: int = positive(4)
    ff_dim: int = positive(256)
    dropout: float = dropout_rate(0.1)
    channels: int = positive(64)  # cnn: channels of each conv block
    stack: bool = False  # cnn: tokens = [flattened conv map, MLP output] (BYOL-A v2)
    pooling: str = "mean"  # mean | mean+max (BYOL-A: their sum) | segments (means of equal time parts)
    segments: int = positive(3)  # pooling: segments -> pooled size segments x dim


@dataclass
class MaskedFramesConfig:
    """TERA/Mockingjay masked-frame reconstruction (L1 on masked positions only)."""

    fraction: float = in_unit_interval(0.15)  # share of frames chosen as span starts * span (~ masked share)
    span: int = positive(7)  # frames per contiguous masked span
    zero_prob: float = in_unit_interval(0.8)  # of the masked frames: set to zero (the dataset mean) ...
    random_prob: float = in_unit_interval(0.1)  # ... replaced by a random frame of the same clip; the rest kept
    freq_mask_prob: float = in_unit_interval(0.0)  # chance per clip of also masking one band of mel bins (0 = off)
    freq_mask_width: int = non_negative(8)  # widest band, in mel bins


@dataclass
class TimeShiftConfig:
    """Classify the shift (in frames) between an anchor crop and a second crop of the same clip."""

    crop_frames: int = positive(16)  # frames per crop
    shifts: list[int] = field(default_factory=lambda: [-8, -4, 0, 4, 8])  # the bins, in frames
    short_clips: str = "pad"  # clips shorter than crop + max|shift|: "pad" or "skip" (counted)


CLUSTER_POSITIVES = ("all", "cross_group")
REMINE_TARGETS = ("partners", "clusters", "both")


@dataclass
class NeighbourConfig:
    """`weights.neighbour`: the joint objective with each clip and one of its `k` nearest clips (DTW over
    normalised MFCC sequences, mined label-free before step 1; ssl_modal/audio/neighbours.py) as the views."""

    k: int = positive(5)  # the partner of a clip is drawn each step among its k nearest clips
    exclude_same: str | None = None  # a manifest column (e.g. speaker): partners only from other groups of it
    method: str | None = None  # the joint method for neighbour pairs (simclr | byol | ...); null: joint.method
    n_mfcc: int = at_least(2, 13)  # MFCCs per frame for the DTW (c0 dropped)
    frames: int = at_least(2, 32)  # each trimmed clip resampled to this many frames (the DP runs batched)
    band: int | None = non_negative(None)  # Sakoe-Chiba band in frames; null: none
    trim_db: float = positive(30.0)  # silence: frames more than this below the clip's loudest are trimmed
    smooth: int = non_negative(0)  # average each distance over the clips' m nearest same-group clips; 0: off
    balance: float | None = positive(None)  # Sinkhorn temperature of the balanced matching between groups; null: off
    remine_at: list[float] = in_unit_interval(factory=list)  # re-mine at these fractions of the run with the
    # encoder's own embeddings (ssl_modal/audio/remine.py); []: the first mining's pairs throughout
    remine_weight: float = in_unit_interval(0.5)  # re-mining: weight of the cosine distances against the DTW ones
    remine_target: str = "partners"  # what re-mining replaces: partners | clusters (needs clusters > 0) | both
    clusters: int = non_negative(0)  # K > 0: label-free cluster ids after mining (ssl_modal/audio/clusters.py);
    # the loss becomes supervised-contrastive with the partner and the anchor's cluster as positives; 0: off
    cluster_within: int = non_negative(10)  # clustering graph: nearest clips of the clip's own group (raw DTW) ...
    cluster_cross: int = positive(5)  # ... and of each other group (smoothed, balanced distances)
    cluster_head: float = non_negative(0.0)  # > 0: + this x the cross-entropy of a linear classifier of the
    # cluster ids on the pooled vectors (both views); 0: off
    cluster_positives: str = "all"  # all: every view of the anchor's cluster is a positive; cross_group: only
    # views of another exclude_same group (another speaker) and the partner


@dataclass
class DataConfig:
    """A manifest (CSV/Parquet with a path column) or a folder of audio files."""

    manifest: str = ""
    path_column: str = "path"  # relative paths are relative to the manifest's folder
    label_columns: list[str] = field(default_factory=list)
    window_seconds: float = positive(1.0)  # longer files are cut into windows of this length (offsets kept)
    window_hop_seconds: float | None = positive(None)  # null: = window_seconds (no overlap)
    max_files: int | None = positive(None)
    on_error: str = "error"  # unusable files (missing, undecodable, empty): "error" or "skip" (counted, logged)


@dataclass
class EvalConfig:
    """Frozen-encoder probes after pretraining, with baselines beside them."""

    digit_column: str = "digit"  # probed on speakers the probe's training split never saw
    speaker_column: str = "speaker"  # probed with stratified k-fold CV
    speaker_folds: int = at_least(2, 5)
    knn_k: int = positive(10)
    batch_size: int = positive(128)
    baselines: bool = True  # MFCC mean+std + logistic regression, and a random-init encoder
    n_mfcc: int = positive(20)
    tsne: bool = True
    # the headline protocol (ssl_modal/audio/protocol.py); rotate_column "" = the single-pretraining table above
    pretrain_all: bool = True  # also pretrain on every clip: model.pt, embeddings, the seen-speaker table
    rotate_column: str = "speaker"  # pretrain + train probes on all groups but one, test on that one; rotate
    held_out: list[str] | None = None  # the groups to hold out in turn (None = every group; fewer while iterating)
    seeds: list[int] = non_negative(factory=lambda: [0])  # pretraining / random-init seeds per fold
    mfcc_segments: int = positive(3)  # the second MFCC row: mean+std over this many equal time parts
    label_counts: list[int] = non_negative(factory=lambda: [0])  # labelled clips per class (0 = all)
    finetune_counts: list[int] = non_negative(factory=list)  # of label_counts: also fine-tune there
    finetune_steps: int = non_negative(300)
    finetune_batch_size: int = positive(32)
    finetune_lr: float = positive(1.0e-3)  # the head's rate; the encoder's is finetune_lr x encoder_lr_scale
    encoder_lr_scale: float = non_negative(0.1)
    finetune_patience: int = non_negative(5)  # validation checks without improvement before stopping
    train: dict | None = None  # core eval-data scheme: the probe learns on eval.train (keys of data:) ...
    test: dict | None = None  # ... and is scored on eval.test; set, it replaces the rotation


@dataclass
class AudioConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    masked_frames: MaskedFramesConfig = field(default_factory=MaskedFramesConfig)
    time_shift: TimeShiftConfig = field(default_factory=TimeShiftConfig)
    weights: dict[str, float] = loss_weight(factory=lambda: {"masked_frames": 1.0, "time_shift": 0.5})
    views: list[dict] = field(default_factory=default_views)  # the joint objective's augmentation pipeline
    joint: JointConfig = field(default_factory=JointConfig)  # weights.joint > 0 turns it on
    neighbour: NeighbourConfig = field(default_factory=NeighbourConfig)  # weights.neighbour > 0 turns it on
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:  # sections built in Python: the ranges the recipe loader checks
        check_fields(self)
        if self.eval.test is not None:  # eval.train / eval.test: the keys of data:, checked the same way
            from ssl_modal.core.eval_data import EvalData

            EvalData(train=self.eval.train, test=self.eval.test).resolve(self.data)
        if self.neighbour.method is not None and self.neighbour.method not in METHODS:
            raise ConfigError(
                f"neighbour.method: expected one of {', '.join(METHODS)} or null, found '{self.neighbour.method}'"
            )
        nb = self.neighbour
        if self.weights.get("neighbour") and nb.clusters:
            method = nb.method or self.joint.method
            if method != "simclr" or not nb.exclude_same:
                raise ConfigError(
                    f"neighbour.clusters needs the simclr method and neighbour.exclude_same (the clustering graph "
                    f"is built per group); found method '{method}', exclude_same {nb.exclude_same!r}"
                )
        if nb.cluster_positives not in CLUSTER_POSITIVES:
            raise ConfigError(
                f"neighbour.cluster_positives: expected one of {', '.join(CLUSTER_POSITIVES)}, "
                f"found '{nb.cluster_positives}'"
            )
        if nb.remine_target not in REMINE_TARGETS:
            raise ConfigError(
                f"neighbour.remine_target: expected one of {', '.join(REMINE_TARGETS)}, found '{nb.remine_target}'"
            )
        if nb.remine_target != "partners" and not nb.clusters:
            raise ConfigError(f"neighbour.remine_target: '{nb.remine_target}' needs neighbour.clusters > 0")
        if nb.cluster_head and (not nb.clusters or nb.remine_target != "partners"):
            raise ConfigError(
                "neighbour.cluster_head needs neighbour.clusters > 0 and ids that stay fixed "
                f"(remine_target: partners), found clusters {nb.clusters}, remine_target '{nb.remine_target}'"
            )
        if nb.cluster_positives != "all" and not nb.clusters:
            raise ConfigError(f"neighbour.cluster_positives: '{nb.cluster_positives}' needs neighbour.clusters > 0")
        if self.weights.get("joint") or self.weights.get("neighbour"):  # view steps checked before any file is read
            from torch import nn

            from ssl_modal.audio.views import audio_views

            audio_views(self.views, nn.Identity(), self.frontend.sample_rate)

    def mining_columns(self) -> list[str]:
        """Manifest columns the pretraining clips must carry for neighbour mining (`neighbour.exclude_same`)."""
        return [self.neighbour.exclude_same] if self.weights.get("neighbour") and self.neighbour.exclude_same else []
