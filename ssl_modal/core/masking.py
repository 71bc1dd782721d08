"""BERT masked-language-model corruption as pure functions with an explicit generator.

The rules are those of HuggingFace `DataCollatorForLanguageModeling`: each maskable token is
selected with `probability`; labels hold the original id at selected positions and -100 elsewhere;
of the selected tokens 80 % become `mask_token_id`, 10 % a random id drawn uniformly from
`[0, vocab_size)` and 10 % stay unchanged. Special tokens and padding are never selected.
With the default arguments and the same CPU generator the draws equal HF's `torch_mask_tokens`.

Whole-word masking selects *words* (each with `probability`) and masks all of their tokens; the
80/10/10 replacement is then decided per token, as in Google's original BERT pretraining code.
Everything runs on the device of `input_ids` (give a generator on that device).
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def maskable_positions(
    input_ids: Tensor,
    special_tokens_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Bool (B, T): True where a token may be selected (not special, not padding)."""
    allowed = torch.ones_like(input_ids, dtype=torch.bool)
    if special_tokens_mask is not None:
        allowed &= ~special_tokens_mask.to(device=input_ids.device, dtype=torch.bool)
    if attention_mask is not None:
        allowed &= attention_mask.to(device=input_ids.device, dtype=torch.bool)
    return allowed


def select_tokens(allowed: Tensor, probability: float, generator: torch.Generator | None = None) -> Tensor:
    """Bool (B, T): each allowed position selected independently with `probability`."""
    probs = torch.full(allowed.shape, float(probability), device=allowed.device)
    probs.masked_fill_(~allowed, 0.0)
    return torch.bernoulli(probs, generator=generator).bool()


def select_words(
    word_ids: Tensor,
    probability: float,
    generator: torch.Generator | None = None,
    allowed: Tensor | None = None,
) -> Tensor:
    """Bool (B, T): each word (same non-negative id within a row) selected with `probability`;
    all tokens of a selected word are selected. Tokens with word id -1 are never selected."""
    word_ids = word_ids.long()
    valid = word_ids >= 0
    if allowed is not None:
        valid &= allowed
    n_words = int(word_ids.max().item()) + 1 if word_ids.numel() else 0
    if n_words <= 0:
        return torch.zeros_like(valid)
    probs = torch.full((word_ids.shape[0], n_words), float(probability), device=word_ids.device)
    chosen = torch.bernoulli(probs, generator=generator).bool()
    return chosen.gather(1, word_ids.clamp(min=0)) & valid


def mask_tokens(
    input_ids: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    special_tokens_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
    probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    word_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt a (B, T) batch of token ids for MLM; returns (masked_input_ids, labels).

    `special_tokens_mask` (1 = special) and `attention_mask` (0 = padding) exclude positions;
    `word_ids` (B, T, -1 for special/padding) switches to whole-word selection.
    The input tensor is not modified.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"mlm probability must be in [0, 1], got {probability}")
    if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
        raise ValueError(
            "mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1, got "
            f"{mask_replace_prob} and {random_replace_prob}"
        )
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    allowed = maskable_positions(input_ids, special_tokens_mask, attention_mask)
    if word_ids is not None:
        if word_ids.shape != input_ids.shape:
            raise ValueError(f"word_ids shape {tuple(word_ids.shape)} differs from input_ids {tuple(input_ids.shape)}")
        selected = select_words(word_ids.to(input_ids.device), probability, generator, allowed)
    else:
        selected = select_tokens(allowed, probability, generator)

    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    inputs = input_ids.clone()
    shape, device = input_ids.shape, input_ids.device
    replaced = torch.bernoulli(torch.full(shape, mask_replace_prob, device=device), generator=generator).bool()
    replaced &= selected
    inputs[replaced] = mask_token_id
    if mask_replace_prob >= 1 or random_replace_prob <= 0:
        return inputs, labels
    scaled = random_replace_prob / (1.0 - mask_replace_prob)  # of the remaining, how many go random
    randomized = torch.bernoulli(torch.full(shape, scaled, device=device), generator=generator).bool()
    randomized &= selected & ~replaced
    random_ids = torch.randint(vocab_size, shape, dtype=input_ids.dtype, device=device, generator=generator)
    inputs[randomized] = random_ids[randomized]
    return inputs, labels
