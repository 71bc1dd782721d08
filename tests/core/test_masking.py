"""BERT MLM masking against a naive reference and against HF's DataCollatorForLanguageModeling."""

import random

import pytest
import torch

from ssl_modal.core.masking import IGNORE_INDEX, mask_tokens

MASK, VOCAB, PAD = 4, 100, 0


def make_batch(batch=64, length=256, seed=0):
    """Random ids with [CLS]=2 ... [SEP]=3 and right padding of varying length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    attention = (torch.arange(length)[None, :] < lengths[:, None]).long()
    special = torch.zeros_like(ids)
    ids[:, 0] = 2
    special[:, 0] = 1
    rows = torch.arange(batch)
    ids[rows, lengths - 1] = 3
    special[rows, lengths - 1] = 1
    ids[attention == 0] = PAD
    special[attention == 0] = 1
    return ids, attention, special


def naive_mask(ids, attention, special, p=0.15, seed=0):
    """Element-by-element reference of the BERT rules with Python's random module."""
    rng = random.Random(seed)
    inputs, labels = ids.clone(), torch.full_like(ids, IGNORE_INDEX)
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if special[b, t] or not attention[b, t] or rng.random() >= p:
                continue
            labels[b, t] = ids[b, t]
            r = rng.random()
            if r < 0.8:
                inputs[b, t] = MASK
            elif r < 0.9:
                inputs[b, t] = rng.randrange(VOCAB)
    return inputs, labels


def stats(ids, attention, special, inputs, labels):
    maskable = (special == 0) & (attention == 1)
    selected = labels != IGNORE_INDEX
    n = selected.sum().item()
    is_mask = (inputs == MASK) & selected
    unchanged = (inputs == ids) & selected
    other = selected & ~is_mask & ~unchanged
    return {
        "rate": n / maskable.sum().item(),
        "mask": is_mask.sum().item() / n,
        # a random draw can hit the original id (1/VOCAB) or MASK: those look like "unchanged"/"mask"
        "random": other.sum().item() / n,
        "unchanged": unchanged.sum().item() / n,
    }


def test_statistics_match_naive_reference_and_bert_rules():
    ids, attention, special = make_batch()
    g = torch.Generator().manual_seed(1)
    inputs, labels = mask_tokens(
        ids, mask_token_id=MASK, vocab_size=VOCAB, generator=g, special_tokens_mask=special, attention_mask=attention
    )
    ours = stats(ids, attention, special, inputs, labels)
    ref = stats(ids, attention, special, *naive_mask(ids, attention, special))
    expected = {"rate": 0.15, "mask": 0.8, "random": 0.1 * (1 - 2 / VOCAB), "unchanged": 0.1 + 0.1 / VOCAB}
    for key, value in expected.items():
        tol = 0.01 if key == "rate" else 0.02
        assert abs(ours[key] - value) < tol, (key, ours[key])
        assert abs(ref[key] - value) < tol, (key, ref[key])
        assert abs(ours[key] - ref[key]) < 2 * tol, (key, ours[key], ref[key])


def test_labels_specials_padding_and_untouched_positions():
    ids, attention, special = make_batch(seed=2)
    original = ids.clone()
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        generator=torch.Generator().manual_seed(0),
        special_tokens_mask=special,
        attention_mask=attention,
    )
    selected = labels != IGNORE_INDEX
    assert torch.equal(ids, original), "the input tensor must not be modified"
    assert torch.equal(labels[selected], ids[selected])
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert not selected[special.bool()].any() and not selected[attention == 0].any()
    assert torch.equal(inputs[~selected], ids[~selected])
    assert inputs.min() >= 0 and inputs.max() < VOCAB


def test_padding_excluded_by_attention_mask_alone():
    ids, attention, _ = make_batch(seed=3)
    _, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        generator=torch.Generator().manual_seed(0),
        attention_mask=attention,
        probability=0.5,
    )
    assert not (labels != IGNORE_INDEX)[attention == 0].any()


def test_equals_huggingface_collator_with_same_generator():
    transformers = pytest.importorskip("transformers")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)])}
    tokenizer = transformers.BertTokenizer(vocab=vocab)
    assert len(tokenizer) == VOCAB and tokenizer.mask_token_id == MASK
    collator = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    collator.generator = torch.Generator().manual_seed(7)
    ids, attention, special = make_batch(batch=8, length=64, seed=4)
    hf_inputs, hf_labels = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        generator=torch.Generator().manual_seed(7),
        special_tokens_mask=special,
    )
    assert torch.equal(labels, hf_labels) and torch.equal(inputs, hf_inputs)


def test_reproducible_with_seed():
    ids, attention, special = make_batch(batch=8, length=64)
    kw = dict(mask_token_id=MASK, vocab_size=VOCAB, special_tokens_mask=special, attention_mask=attention)
    a = mask_tokens(ids, generator=torch.Generator().manual_seed(5), **kw)
    b = mask_tokens(ids, generator=torch.Generator().manual_seed(5), **kw)
    c = mask_tokens(ids, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_whole_word_masks_whole_words():
    batch, words, pieces = 32, 60, 3
    # word w covers tokens [1 + 3w, 1 + 3w + 3): each word is 1..3 tokens; -1 at [CLS]/[SEP]/padding
    word_ids = torch.full((batch, 1 + words * pieces + 1), -1)
    g = torch.Generator().manual_seed(0)
    for b in range(batch):
        t = 1
        for w in range(words):
            n = int(torch.randint(1, pieces + 1, (1,), generator=g))
            word_ids[b, t : t + n] = w
            t += n
    ids = torch.randint(5, VOCAB, word_ids.shape, generator=g)
    attention = torch.ones_like(ids)
    special = (word_ids == -1).long()
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        generator=torch.Generator().manual_seed(1),
        special_tokens_mask=special,
        attention_mask=attention,
        word_ids=word_ids,
    )
    selected = labels != IGNORE_INDEX
    assert not selected[word_ids == -1].any()
    chosen_words = total_words = 0
    for b in range(batch):
        for w in range(words):
            tokens = selected[b][word_ids[b] == w]
            assert tokens.all() or not tokens.any(), f"word {w} of row {b} is partly masked: {tokens.tolist()}"
            chosen_words += int(tokens.all())
            total_words += 1
    assert abs(chosen_words / total_words - 0.15) < 0.03
    assert torch.equal(labels[selected], ids[selected])
    assert abs(((inputs == MASK) & selected).sum().item() / selected.sum().item() - 0.8) < 0.05


def test_invalid_arguments_raise():
    ids, attention, special = make_batch(batch=2, length=8)
    with pytest.raises(ValueError, match="probability must be in"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, probability=1.5)
    with pytest.raises(ValueError, match="sum to at most 1"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError, match="word_ids shape"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, word_ids=torch.zeros(2, 7, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_tensor_device():
    ids, attention, special = (x.cuda() for x in make_batch(batch=4, length=32))
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        generator=torch.Generator("cuda").manual_seed(0),
        special_tokens_mask=special,
        attention_mask=attention,
    )
    assert inputs.device.type == "cuda" and labels.device.type == "cuda"
