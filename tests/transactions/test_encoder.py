"""The field encoder: clashing field names, padding respected, pooling, configurable sizes."""

import pytest
import torch

from ssl_modal.transactions.config import EncoderConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from tests.transactions.synthetic import FIELDS, synthetic_batch

CONFIGS = [
    dict(hidden=32),
    dict(hidden=32, bidirectional=True, combine="sum"),
    dict(kind="transformer", hidden=32, heads=4, num_layers=2),
    dict(kind="transformer", hidden=32, causal=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["gru", "bigru-sum", "transformer", "causal-transformer"])
def test_padding_does_not_change_outputs(cfg):
    """Row 1 alone and row 1 padded inside a longer batch give the same tokens and pooled vector."""
    torch.manual_seed(0)
    enc = TransactionEncoder(FIELDS, EncoderConfig(**cfg)).eval()
    batch = synthetic_batch(4, 20, seed=1)
    n = int(batch["lengths"][1])
    assert n < 20
    alone = {
        "cat": {k: v[1:2, :n] for k, v in batch["cat"].items()},
        "num": {k: v[1:2, :n] for k, v in batch["num"].items()},
        "mask": batch["mask"][1:2, :n],
        "lengths": batch["lengths"][1:2],
    }
    with torch.no_grad():
        full, single = enc(batch), enc(alone)
    assert full.tokens.shape[:2] == (4, 20) and full.mask.shape == (4, 20)
    assert torch.allclose(full.pooled[1], single.pooled[0], atol=1e-5)
    assert torch.allclose(full.tokens[1, :n], single.tokens[0], atol=1e-5)
    assert torch.all(full.tokens[1, n:] == 0)


def test_field_names_that_clash_with_torch_attributes():
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=16, field_dims={"type": 3, "training": 2}))
    assert enc.embed.embedding_of("type").embedding_dim == 3
    assert enc.embed.embedding_of("training").embedding_dim == 2
    assert enc.embed.embedding_of("mcc").embedding_dim == EncoderConfig().mcc_dim
    assert isinstance(enc.training, bool)  # the module attribute is untouched by a field called "training"
    out = enc(synthetic_batch())
    assert out.pooled.shape == (8, 16)


def test_mcc_dimension_configurable_and_concat_width():
    cfg = EncoderConfig(hidden=16, mcc_dim=7, cat_dim=5, num_dim=4)
    enc = TransactionEncoder(FIELDS, cfg)
    assert enc.embed.embedding_of("mcc").embedding_dim == 7
    assert enc.embed.out_dim == 7 + 5 * 3 + 4


def test_missing_field_in_batch_names_it():
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=8))
    batch = synthetic_batch()
    del batch["cat"]["type"]
    with pytest.raises(KeyError, match="no categorical field 'type'"):
        enc(batch)


def test_bad_encoder_config_messages():
    with pytest.raises(ValueError, match="encoder.kind: expected 'gru' or 'transformer', found 'lstm'"):
        EncoderConfig(kind="lstm")
    with pytest.raises(ValueError, match="encoder.combine"):
        EncoderConfig(combine="mean")
