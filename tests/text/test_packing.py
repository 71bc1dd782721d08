"""Packing: every text lands in exactly one row, and a packed text is encoded exactly as if it were alone."""

import pytest
import torch

from ssl_modal.text import build_text_model
from ssl_modal.text.packing import block_diagonal_mask, fill_ratio, pack_texts, segment_pool, segment_positions

from .conftest import tiny_model_config


def test_segment_positions_and_block_mask_match_a_naive_loop():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 0, 0], list(range(8))]
    mask = block_diagonal_mask(seg)
    assert mask.shape == (2, 1, 8, 8)
    for b in range(2):
        for i in range(8):
            for j in range(8):
                si, sj = int(seg[b, i]), int(seg[b, j])
                expected = (si == sj and si >= 0) or (si < 0 and i == j)
                assert bool(mask[b, 0, i, j]) == expected, (b, i, j)


def test_pack_texts_places_each_text_once_and_fills_rows(small_tokenizer, sample_texts):
    enc = small_tokenizer([t[: 20 + 9 * (i % 12)] for i, t in enumerate(sample_texts[:200])])  # 5-32 tokens
    rows = pack_texts(enc["input_ids"], enc["special_tokens_mask"], max_length=32, seed=3)
    assert all(len(r["input_ids"]) <= 32 for r in rows)
    pieces = []
    for r in rows:
        assert len(r["input_ids"]) == len(r["special_tokens_mask"]) == len(r["segment_ids"])
        for s in sorted(set(r["segment_ids"])):
            pieces.append(tuple(t for t, g in zip(r["input_ids"], r["segment_ids"], strict=True) if g == s))
    assert sorted(pieces) == sorted(tuple(x) for x in enc["input_ids"])
    padded_fill = sum(map(len, enc["input_ids"])) / (len(enc["input_ids"]) * 32)
    assert fill_ratio(rows, 32) > 0.9 and fill_ratio(rows, 32) > padded_fill + 0.15  # one text per row: 0.75
    assert rows == pack_texts(enc["input_ids"], enc["special_tokens_mask"], max_length=32, seed=3)  # seeded


def test_pack_texts_rejects_a_text_longer_than_a_row():
    with pytest.raises(ValueError, match="text 1 has 5 tokens, more than max_length=4"):
        pack_texts([[1, 2], [1, 2, 3, 4, 5]], [[1, 1], [1, 0, 0, 0, 1]], max_length=4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_packed_texts_encode_as_if_alone(small_tokenizer, sample_texts, attn, pooling):
    torch.manual_seed(0)
    config = tiny_model_config(small_tokenizer)
    config["model"]["pooling"] = pooling
    model = build_text_model(config).eval()
    model.encoder.mlm.config._attn_implementation = attn
    short = [t[: 20 + 5 * (i % 4)] for i, t in enumerate(sample_texts[:12])]  # several texts per 32-token row
    enc = small_tokenizer(short)
    rows = pack_texts(enc["input_ids"], enc["special_tokens_mask"], max_length=32, seed=0)
    assert max(max(r["segment_ids"]) for r in rows) >= 1  # some row really holds two texts
    batch = model.collate(rows)
    with torch.no_grad():
        packed = model.encoder.sentences(batch)
        hidden = model.encoder.hidden(batch["input_ids"], batch["attention_mask"], batch["segment_ids"])
        alone = {
            tuple(ids): model.encoder.sentences(model.collate([{"input_ids": ids, "special_tokens_mask": sm}]))[0]
            for ids, sm in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)
        }
    k = 0
    for r in rows:
        for s in sorted(set(r["segment_ids"])):
            ids = tuple(t for t, g in zip(r["input_ids"], r["segment_ids"], strict=True) if g == s)
            torch.testing.assert_close(packed[k], alone[ids], atol=1e-5, rtol=1e-4)
            k += 1
    assert k == len(short) == packed.shape[0]
    # token states too: the first text of row 0 alone gives the same per-token hidden states
    first = [t for t, g in zip(rows[0]["input_ids"], rows[0]["segment_ids"], strict=True) if g == 0]
    with torch.no_grad():
        single = model.encoder.hidden(torch.tensor([first]), torch.ones(1, len(first), dtype=torch.long))
    torch.testing.assert_close(hidden[0, : len(first)], single[0], atol=1e-5, rtol=1e-4)


def test_segment_pool_matches_naive_mean_and_first_token():
    tokens = torch.randn(2, 5, 3)
    seg = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, -1, -1]])
    mean = segment_pool(tokens, seg, "mean")
    cls = segment_pool(tokens, seg, "cls")
    spans = [(0, 0, 2), (0, 2, 5), (1, 0, 1), (1, 1, 3)]
    for i, (b, lo, hi) in enumerate(spans):
        torch.testing.assert_close(mean[i], tokens[b, lo:hi].mean(0))
        torch.testing.assert_close(cls[i], tokens[b, lo])


def test_packed_mlm_trains_and_counts_real_tokens(small_tokenizer, sample_texts):
    torch.manual_seed(0)
    model = build_text_model(tiny_model_config(small_tokenizer))
    enc = small_tokenizer(sample_texts[:40])
    rows = pack_texts(enc["input_ids"], enc["special_tokens_mask"], max_length=32)
    batch = model.collate(rows[:8])
    model.set_generator(torch.Generator().manual_seed(0))
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert out["mlm/real_tokens"] == batch["attention_mask"].sum()
