"""Model-side configs of the transactions domain: the field encoder and the three objectives.

Each dataclass is one section of a `recipes/transactions_*.yaml` recipe (`encoder:`, `objectives:`);
`asdict()` of them goes into the checkpoint's ModelSpec config next to the fitted preprocessor state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssl_modal.core.ranges import at_least, check_fields, dropout_rate, loss_weight, non_negative, positive, ranged
from ssl_modal.core.trainer import TrainConfig

POOLING_PARTS = ("last", "mean", "max", "std", "field_mean")  # client vector blocks, see client_pooling.py
OUTER_PREFIX = "outer:"  # also "outer:<field a>:<field b>": second-order pooling of two categorical fields
CLIENT_POOLING = ("mean", "field_mean")  # default of `client_embeddings` and `eval.client_pooling` (issue 19)


def outer_fields(part: str) -> tuple[str, str] | None:
    """("mcc", "hour") for the part "outer:mcc:hour"; None for any other part."""
    if not isinstance(part, str) or not part.startswith(OUTER_PREFIX):
        return None
    fields = part[len(OUTER_PREFIX) :].split(":")
    return (fields[0], fields[1]) if len(fields) == 2 and all(fields) else None


def check_pooling(pooling, where: str = "pooling") -> tuple[str, ...]:
    """`pooling` as a tuple of known, distinct parts (a single string is one part)."""
    parts = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    unknown = [p for p in parts if p not in POOLING_PARTS and outer_fields(p) is None]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise ValueError(
            f"{where}: expected distinct parts among {list(POOLING_PARTS)} or 'outer:<field>:<field>', "
            f"found {list(parts)}"
        )
    return parts


@dataclass
class EncoderConfig:
    """One embedding per categorical field, numeric fields projected, then a GRU or a Transformer."""

    kind: str = "gru"  # "gru" | "transformer"
    hidden: int = positive(256)  # GRU hidden size / Transformer d_model
    mcc_dim: int = positive(32)  # embedding size of the "mcc" field
    cat_dim: int = positive(16)  # embedding size of every other categorical field ...
    field_dims: dict[str, int] = positive(factory=dict)  # ... unless set here per field: {"type": 4}
    num_dim: int = positive(16)  # all numeric fields (+ their "masked" flags) projected to this size
    combine: str = "concat"  # "concat" (CoLES TrxEncoder) | "sum" (each field projected, summed)
    num_layers: int = positive(1)
    bidirectional: bool = False  # GRU only; the time-gap head then reads the forward half
    heads: int = positive(4)  # Transformer only
    ff_dim: int = positive(512)  # Transformer only
    causal: bool = False  # Transformer only: attend to the past only
    max_positions: int = positive(1024)  # Transformer only: learned positions
    dropout: float = dropout_rate(0.0)

    def __post_init__(self) -> None:
        if self.kind not in ("gru", "transformer"):
            raise ValueError(f"encoder.kind: expected 'gru' or 'transformer', found '{self.kind}'")
        if self.combine not in ("concat", "sum"):
            raise ValueError(f"encoder.combine: expected 'concat' or 'sum', found '{self.combine}'")
        if self.kind == "transformer" and self.hidden % self.heads:
            raise ValueError(f"encoder.hidden ({self.hidden}) must be divisible by encoder.heads ({self.heads})")


@dataclass
class MaskedConfig:
    """Masked-attribute modelling: hide ~15 % of events (or single fields), predict their categories."""

    weight: float = loss_weight(1.0)  # 0 switches the objective off
    probability: float = ranged("(0, 1)", 0.15)
    mode: str = "event"  # "event": hide every field of a selected event; "field": each field alone
    targets: list | None = None  # categorical fields to predict; null = every categorical field

    def __post_init__(self) -> None:
        if self.mode not in ("event", "field"):
            raise ValueError(f"objectives.masked.mode: expected 'event' or 'field', found '{self.mode}'")


@dataclass
class OrderConfig:
    """Order verification (original vs corrupted window) plus a time-gap-to-next-event regression head."""

    weight: float = loss_weight(1.0)
    corruption: str = "swap"  # "swap": exchange two adjacent sub-windows; "shuffle": permute a span
    span: float = ranged("(0, 1]", 0.3)  # corrupted part as a fraction of the window (>= 2 events)
    min_length: int = at_least(2, 4)  # shorter windows are never corrupted and do not count in the loss
    gap_weight: float = loss_weight(1.0)  # weight of the time-gap regression (0 switches it off)

    def __post_init__(self) -> None:
        if self.corruption not in ("swap", "shuffle"):
            raise ValueError(f"objectives.order.corruption: expected 'swap' or 'shuffle', found '{self.corruption}'")


@dataclass
class ContrastiveConfig:
    """CoLES: random slices of one window are positives, slices of the other windows negatives (InfoNCE)."""

    weight: float = loss_weight(1.0)
    views: int = at_least(2, 2)  # slices per window (CoLES uses 5)
    min_fraction: float = ranged("(0, 1]", 0.3)  # slice length as a fraction of the window length
    max_fraction: float = ranged("(0, 1]", 0.8)
    max_events: int | None = positive(None)  # optional cap on the slice length
    temperature: float = positive(0.1)

    def __post_init__(self) -> None:
        if self.min_fraction > self.max_fraction:
            raise ValueError(
                "objectives.contrastive: expected 0 < min_fraction <= max_fraction <= 1, found "
                f"{self.min_fraction}, {self.max_fraction}"
            )


@dataclass
class HistoryConfig:
    """History-aware heads on the causal state (`history.py`): forecast the next gap/amount and event counts
    over future horizons from a low-dimensional bottleneck of the state, and predict each event's amount and
    time gap (Gaussian mean and variance) and `categorical_targets` (softmax) from the state `lag` events
    earlier plus the event's other fields."""

    weight: float = loss_weight(0.0)  # 0 switches the objective off (the default, so older recipes are unchanged)
    state_dim: int = at_least(1, 8)  # width of the exported causal state (features: state_00 ...)
    lags: list[int] = at_least(1, factory=lambda: [1, 16])  # history horizons, in events, of the residual heads
    horizons_hours: list[float] = positive(factory=lambda: [1.0, 24.0, 168.0])  # future event-count horizons
    hidden: int = positive(64)  # width of the residual heads' hidden layer
    categorical_targets: list = field(default_factory=list)  # also predicted by the residual heads, e.g. ["hour"]
    # (hidden from the event's input; hiding the hour hurt the amount NLL)

    def __post_init__(self) -> None:
        self.lags = [int(v) for v in self.lags]
        if not self.lags:
            raise ValueError("objectives.history.lags: expected integers >= 1, found []")


@dataclass
class ObjectivesConfig:
    masked: MaskedConfig = field(default_factory=MaskedConfig)
    order: OrderConfig = field(default_factory=OrderConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)


# ---- recipe sections -----------------------------------------------------------------------------
@dataclass
class DataConfig:
    """The transactions table and, depending on `task`, its labels.

    task "probe": per-client labels in `labels_file` (`label_client_column`, `label_column`), or, without
    `labels_file` and with split "client", a per-client constant `label_column` of the table itself;
    task "fraud": a per-transaction `label_column` in the table (`positive_label` marks fraud; numbers
    != 0 otherwise) and a time split: rows before `split_time` train, rows from it on are the test set;
    task "export": no labels.
    """

    table: str = ""
    task: str = "probe"  # "probe" | "fraud" | "export"
    labels_file: str | None = None
    label_column: str | None = None
    label_client_column: str = "client_id"
    positive_label: str | None = None
    split_time: str | None = None  # fraud, split "time": e.g. "2019-09-01"
    split: str = "time"  # fraud: "time" (data.split_time) | "client" (two client halves, swapped;
    # also for probe: encoder + probe fitted on one half, tested on the other)
    split_seed: int = non_negative(0)  # split "client": which clients fall in which half (not the training seed)
    max_rows: int | None = positive(None)  # first N rows only (after reading)
    shards: str | None = None  # train on window shards from `ssl-modal preprocess` (streamed) instead

    def __post_init__(self) -> None:
        if self.task not in ("probe", "fraud", "export"):
            raise ValueError(f"data.task: expected 'probe', 'fraud' or 'export', found '{self.task}'")
        if self.split not in ("time", "client"):
            raise ValueError(f"data.split: expected 'time' or 'client', found '{self.split}'")


@dataclass
class EvalConfig:
    """Frozen-model evaluation after pretraining."""

    cv: int = at_least(2, 5)  # probe: stratified folds over clients
    knn_k: int = positive(10)
    raw_features: list = field(default_factory=list)  # fraud: table columns for the raw LightGBM baseline
    categorical_raw: list = field(default_factory=list)  # ... of which categorical (LightGBM categories)
    lgbm_rounds: int = positive(200)  # LightGBM rounds (with lgbm_valid_fraction > 0: the most rounds)
    # split "client" fraud tables (lgbm_fit.py): early stopping on a client-disjoint share of the training
    # clients (0: fixed lgbm_rounds), patience in rounds, refit on all training clients, learning rates tried
    lgbm_valid_fraction: float = ranged("[0, 1)", 0.0)
    lgbm_patience: int = positive(50)
    lgbm_refit: bool = True
    lgbm_learning_rates: list = positive(factory=lambda: [0.05])
    lgbm_threads: int = positive(2)
    passes: int = positive(5)  # features(): interleaved masking patterns
    batch_size: int = positive(128)
    baselines: bool = True
    embedding_fields: list = field(default_factory=lambda: ["mcc"])  # exported code embeddings / maps
    skipgram_dim: int = positive(32)
    skipgram_epochs: int = positive(5)
    map_method: str = "pca"  # "pca" | "tsne"
    # client embeddings (probe rows, client_embeddings.parquet): blocks pooled over each client's history, see
    # client_pooling.py: "last" (last state per window), "mean" / "max" / "std" (per-event states), "field_mean"
    client_pooling: list = field(default_factory=lambda: list(CLIENT_POOLING))

    def __post_init__(self) -> None:
        self.client_pooling = list(check_pooling(self.client_pooling, "eval.client_pooling"))


@dataclass
class TransactionsConfig:
    """A `recipes/transactions_*.yaml` recipe. `columns` is T-data's ColumnMapping and `preprocess` the
    other PreprocessConfig keys; both are checked when the recipe runs."""

    data: DataConfig = field(default_factory=DataConfig)
    columns: dict = field(default_factory=dict)
    preprocess: dict = field(default_factory=dict)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threads: int | None = positive(None)  # torch CPU threads for the run (null: torch's default); small GRUs are
    # often faster on 1 thread, and much faster on a busy machine

    def __post_init__(self) -> None:  # sections built in Python: the ranges the recipe loader checks
        check_fields(self)
