"""Data and models of bench/mlm_throughput.py: the AG News corpus, the vocabulary, the batch stream every
variant reads (padded to SEQ, and packed rows), the HF BertConfig and our text SSLModel of the same size."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT  # noqa: E402

SHARED_TEXT = ROOT.parent / "shared" / "data" / "text"
BERT_VOCAB = SHARED_TEXT / "bert_uncased_vocab" / "vocab.txt"
EXAMPLES = ROOT / "examples" / "data"
VOCAB_SIZE = 30_522
LAYERS, HIDDEN, HEADS, FFN, SEQ, BATCH = 4, 256, 4, 1024, 128, 32
MLM_PROB, LR, WEIGHT_DECAY, SEED = 0.15, 5e-4, 0.01, 0


# ---- data ---------------------------------------------------------------------------------------
def find_corpus() -> tuple[Path, str]:
    for path, what in (
        (SHARED_TEXT / "ag_news" / "train.csv", "shared AG News train.csv"),
        (EXAMPLES / "ag_news" / "train.csv", "examples/data AG News train.csv sample"),
    ):
        if path.is_file():
            return path, what
    raise FileNotFoundError(f"no AG News train.csv under {SHARED_TEXT} or {EXAMPLES}")


def find_vocab(texts: list[str], workdir: Path) -> tuple[Path, str]:
    """The BERT uncased vocab.txt if present, else one shipped under examples/data, else a synthetic
    30,522-token WordPiece vocab trained on the corpus (padded with [unusedN] if it comes out smaller)."""
    if BERT_VOCAB.is_file():
        return BERT_VOCAB, f"BERT uncased vocab.txt ({BERT_VOCAB})"
    shipped = sorted(EXAMPLES.rglob("vocab.txt")) if EXAMPLES.is_dir() else []
    if shipped:
        return shipped[0], f"vocab shipped at {shipped[0].relative_to(ROOT)}"
    from ssl_modal.text import train_wordpiece

    vocab = train_wordpiece(texts, VOCAB_SIZE, min_frequency=1).backend.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    tokens += [f"[unused{i}]" for i in range(VOCAB_SIZE - len(tokens))]
    path = workdir / "vocab.txt"
    path.write_text("\n".join(tokens[:VOCAB_SIZE]) + "\n", encoding="utf-8")
    return path, (
        f"synthetic: 30,522-token WordPiece vocab trained on the corpus (BERT vocab.txt not found at {BERT_VOCAB})"
    )


def prepare(workdir: Path) -> dict:
    """Tokenize once (padded/truncated to SEQ) and lay out the batch stream all variants consume."""
    from transformers import BertTokenizer

    from ssl_modal.core.distributed import DistInfo, ShardedEpochSampler
    from ssl_modal.text import load_vocab_file, read_corpus

    corpus_path, corpus_what = find_corpus()
    texts = read_corpus(corpus_path).texts
    vocab_path, vocab_what = find_vocab(texts, workdir)
    hf_tok = BertTokenizer(vocab=str(vocab_path), do_lower_case=True)
    ours_tok = load_vocab_file(vocab_path, lowercase=True, max_length=SEQ)
    assert len(hf_tok) == ours_tok.vocab_size == VOCAB_SIZE, (len(hf_tok), ours_tok.vocab_size)
    assert hf_tok.mask_token_id == ours_tok.mask_token_id and hf_tok.pad_token_id == ours_tok.pad_token_id
    enc = hf_tok(
        texts,
        padding="max_length",
        truncation=True,
        max_length=SEQ,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    data = {k: enc[k].long() for k in ("input_ids", "attention_mask", "special_tokens_mask")}
    # the order in which ssl_modal.Trainer reads epoch 0 (seed 0); a, b, c read this order directly
    order = torch.tensor(list(ShardedEpochSampler(len(texts), BATCH, 0, SEED, DistInfo())))
    stream = {k: v[order] for k, v in data.items()}
    real = data["attention_mask"].sum(1).float()
    from ssl_modal.text import TextCollate
    from ssl_modal.text.packing import fill_ratio, pack_texts

    enc = ours_tok(texts)
    rows = pack_texts(enc["input_ids"], enc["special_tokens_mask"], SEQ, seed=SEED)
    packed = TextCollate(ours_tok).pad({k: [r[k] for r in rows] for k in rows[0]})
    return {
        "hf_tokenizer": hf_tok,
        "tokenizer": ours_tok,
        "data": data,
        "stream": stream,
        "packed": packed,
        "info": {
            "corpus": str(corpus_path),
            "corpus_source": corpus_what,
            "texts": len(texts),
            "vocab": str(vocab_path),
            "vocab_source": vocab_what,
            "vocab_size": VOCAB_SIZE,
            "mean_real_tokens_per_seq": round(float(real.mean()), 2),
            "truncated_fraction": round(float((real >= SEQ).float().mean()), 4),
            "packed_rows": len(rows),
            "packed_fill": round(fill_ratio(rows, SEQ), 4),
        },
    }


def bert_config(pad_token_id: int):
    """The HF config our text model builds for these sizes (same init, same attention implementation)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=SEQ,
        pad_token_id=pad_token_id,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def our_model(ctx: dict):
    from ssl_modal.text import MLMConfig, ModelConfig, build_text_model, text_model_config

    torch.manual_seed(SEED)
    cfg = ModelConfig(
        hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, intermediate_size=FFN, max_length=SEQ, dropout=0.1
    )
    return build_text_model(text_model_config(cfg, MLMConfig(probability=MLM_PROB), ctx["tokenizer"]))


def stream_batch(ctx: dict, step: int) -> dict[str, torch.Tensor]:
    return {k: v[step * BATCH : (step + 1) * BATCH] for k, v in ctx["stream"].items()}
