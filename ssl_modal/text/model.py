"""The text encoder (any HF masked-LM model) and the masked-language-model objective.

`build_text_model(config)` is the checkpoint builder: `config` is a plain dict holding the
tokenizer state, the HF model config and the MLM settings, so `load_model` rebuilds the exact
model offline. `text_model_config(...)` makes that dict from the recipe's dataclasses.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel
from ssl_modal.core.masking import IGNORE_INDEX, mask_tokens
from ssl_modal.text.config import MLMConfig, ModelConfig
from ssl_modal.text.data import TextCollate
from ssl_modal.text.tokenizer import TextTokenizer

BUILDER = "ssl_modal.text.model:build_text_model"
# Heads that map hidden states (..., D) -> logits (..., V) on their own, by attribute name.
KNOWN_HEADS = ("cls", "lm_head")


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions: (B, T, D), (B, T) bool -> (B, D)."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TextEncoder(Encoder):
    """Wraps an HF `...ForMaskedLM`; `pooled` is the masked mean of the last hidden layer."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm
        self.head_name = next((name for name in KNOWN_HEADS if isinstance(getattr(mlm, name, None), torch.nn.Module)), None)

    def hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Last hidden layer (B, T, D) of the transformer body (no MLM head)."""
        return self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def predict(self, hidden: Tensor) -> Tensor:
        """The MLM head applied to hidden states (N, D) -> logits (N, V); needs a known head."""
        return getattr(self.mlm, self.head_name)(hidden)

    def forward(self, batch: dict) -> EncoderOutput:
        mask = batch["attention_mask"].bool()
        tokens = self.hidden(batch["input_ids"], batch["attention_mask"])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


class MaskedLM(Objective):
    """BERT masked-language modelling. The head runs only at masked positions (when the model's head
    is known: BERT `cls`, RoBERTa-style `lm_head`); other models run their full forward.
    Logs "accuracy": top-1 accuracy of the predictions at masked positions."""

    def __init__(self, mask_token_id: int, vocab_size: int, probability: float = 0.15, whole_word: bool = False,
                 mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1):
        super().__init__()
        self.mask_token_id, self.vocab_size = int(mask_token_id), int(vocab_size)
        self.probability, self.whole_word = float(probability), bool(whole_word)
        self.mask_replace_prob, self.random_replace_prob = float(mask_replace_prob), float(random_replace_prob)

    def forward(self, encoder: TextEncoder, batch: dict) -> dict[str, Tensor]:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        word_ids = None
        if self.whole_word:
            if "word_ids" not in batch:
                raise KeyError("whole-word masking needs 'word_ids' in the batch: build the collate with word_ids=True")
            word_ids = batch["word_ids"]
        masked, labels = mask_tokens(
            input_ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
            generator=self.rng(input_ids.device), special_tokens_mask=batch.get("special_tokens_mask"),
            attention_mask=attention_mask, probability=self.probability, mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob, word_ids=word_ids,
        )
        selected = labels != IGNORE_INDEX
        targets = labels[selected]
        if encoder.head_name is not None:
            logits = encoder.predict(encoder.hidden(masked, attention_mask)[selected])
        else:  # unknown head layout: full forward, then keep the masked positions
            logits = encoder.mlm(input_ids=masked, attention_mask=attention_mask).logits[selected]
        if targets.numel() == 0:  # nothing selected (tiny batch): a zero loss that still backpropagates
            zero = logits.sum() * 0.0
            return {"loss": zero, "accuracy": zero.detach(), "masked_tokens": zero.detach()}
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.detach().argmax(-1) == targets).float().mean()
        return {"loss": loss, "accuracy": accuracy, "masked_tokens": selected.sum().float()}


def text_model_config(model: ModelConfig, mlm: MLMConfig, tokenizer: TextTokenizer, text_column: str = "text") -> dict:
    """The plain dict `build_text_model` takes (and a checkpoint stores)."""
    return {
        "model": asdict(model),
        "mlm": asdict(mlm),
        "tokenizer": tokenizer.to_config(),
        "text_column": text_column,
        "hf_config": None,
    }


def _hf_model(config: dict, vocab_size: int):
    """(model, plain HF config dict): from the stored HF config, a local folder, or a fresh BERT."""
    from transformers import AutoConfig, AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    m = config["model"]
    if config.get("hf_config"):
        hf = dict(config["hf_config"])
        model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(hf.pop("model_type"), **hf))
    elif m.get("pretrained_path"):
        model = AutoModelForMaskedLM.from_pretrained(m["pretrained_path"], local_files_only=True)
    else:
        bert = BertConfig(
            vocab_size=vocab_size, hidden_size=m["hidden_size"], num_hidden_layers=m["num_layers"],
            num_attention_heads=m["num_heads"], intermediate_size=m["intermediate_size"],
            max_position_embeddings=m["max_length"], hidden_dropout_prob=m["dropout"],
            attention_probs_dropout_prob=m["dropout"], pad_token_id=config["tokenizer_pad_id"],
        )
        model = BertForMaskedLM(bert)
    return model, json.loads(model.config.to_json_string(use_diff=False))


def build_text_model(config: dict) -> SSLModel:
    """Build the MLM `SSLModel` from a plain dict (see `text_model_config`); the checkpoint builder."""
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
    objective = MaskedLM(
        tokenizer.mask_token_id, tokenizer.vocab_size, mlm_cfg["probability"], mlm_cfg["whole_word"],
        mlm_cfg.get("mask_replace_prob", 0.8), mlm_cfg.get("random_replace_prob", 0.1),
    )
    spec_config = {**config, "hf_config": hf_config}
    return SSLModel(
        TextEncoder(model), {"mlm": objective},
        spec=ModelSpec(builder=BUILDER, config=spec_config, kind="text-mlm"),
        collate=TextCollate(tokenizer, word_ids=bool(mlm_cfg["whole_word"]), text_key=config.get("text_column", "text")),
    )


def build_model(config, texts=None) -> SSLModel:
    """Tokenizer + model from a `TextConfig` (`texts` trains the vocabulary when asked to)."""
    from ssl_modal.text.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(config.tokenizer, config.model.max_length, texts, config.model.pretrained_path)
    return build_text_model(text_model_config(config.model, config.mlm, tokenizer, config.data.text_column))
