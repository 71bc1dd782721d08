"""The three objectives: masking rates, corruption labels, and loss decreasing through the shared Trainer."""

import pytest
import torch

from ssl_modal.core.trainer import Trainer
from ssl_modal.transactions.config import EncoderConfig, MaskedConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from ssl_modal.transactions.model import build_transactions_model
from ssl_modal.transactions.objectives import MaskedAttribute
from tests.train_configs import quiet_config
from tests.transactions.synthetic import FIELDS, SyntheticRows, make_collate, synthetic_batch


def test_event_masking_hides_whole_events_at_the_requested_rate():
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=8))
    obj = MaskedAttribute(enc, MaskedConfig(probability=0.15))
    mask = torch.ones(200, 50, dtype=torch.bool)
    mask[:, 40:] = False
    cat, num = obj.hidden_positions(mask, torch.Generator().manual_seed(0))
    sel = cat["mcc"]
    assert all(torch.equal(sel, v) for v in list(cat.values()) + list(num.values()))
    assert not sel[:, 40:].any()
    assert abs(sel.float().sum() / mask.sum() - 0.15) < 0.01


def test_field_masking_is_per_field_and_hides_the_amount_with_its_bin():
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=8))
    obj = MaskedAttribute(enc, MaskedConfig(probability=0.3, mode="field", targets=["mcc", "amount_bin"]))
    cat, num = obj.hidden_positions(torch.ones(50, 40, dtype=torch.bool), torch.Generator().manual_seed(0))
    assert set(cat) == {"mcc", "amount_bin"} and set(num) == {"amount"}
    assert not torch.equal(cat["mcc"], cat["amount_bin"]) and torch.equal(num["amount"], cat["amount_bin"])


def test_unknown_target_field_message():
    enc = TransactionEncoder(FIELDS, EncoderConfig(hidden=8))
    with pytest.raises(ValueError, match=r"\['amount'\] are not categorical fields"):
        MaskedAttribute(enc, MaskedConfig(targets=["mcc", "amount"]))


def test_non_causal_transformer_with_gap_head_is_refused():
    with pytest.raises(ValueError, match="encoder.causal=true"):
        build_transactions_model({"fields": FIELDS, "encoder": {"kind": "transformer", "hidden": 16}})
    model = build_transactions_model(
        {"fields": FIELDS, "encoder": {"kind": "transformer", "hidden": 16}, "objectives": {"order": {"gap_weight": 0}}}
    )
    assert model.objectives["order"].gap_head is None


def test_objectives_are_reproducible_from_the_generator():
    model = build_transactions_model({"fields": FIELDS, "encoder": {"hidden": 16}})
    batch = synthetic_batch()
    model.set_generator(torch.Generator().manual_seed(7))
    a = model(batch)
    model.set_generator(torch.Generator().manual_seed(7))
    b = model(batch)
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_metrics_name_every_target_field():
    model = build_transactions_model({"fields": FIELDS, "encoder": {"hidden": 16}})
    out = model(synthetic_batch())
    for f in ("mcc", "amount_bin", "type", "training"):
        assert f"masked/{f}/acc" in out and f"masked/{f}/loss" in out
    assert {"order/acc", "order/gap_loss", "contrastive/pos_top1"} <= set(out)


@pytest.mark.parametrize("objective", ["masked", "order", "contrastive"])
def test_loss_decreases_through_the_shared_trainer(tmp_path, objective):
    weights = {name: {"weight": 1.0 if name == objective else 0.0} for name in ("masked", "order", "contrastive")}
    torch.manual_seed(0)
    model = build_transactions_model(
        {"fields": FIELDS, "encoder": {"hidden": 32, "mcc_dim": 8, "cat_dim": 4}, "objectives": weights}
    )
    rows = SyntheticRows(64, 16)
    collate = make_collate(rows)
    cfg = quiet_config(
        tmp_path / objective,
        max_steps=40,
        batch_size=16,
        learning_rate=1e-2,
        warmup_steps=2,
        log_every=4,
    )
    before = Trainer(cfg).evaluate(model, rows, collate)["loss"]
    result = Trainer(cfg).fit(model, rows, collate)
    after = Trainer(cfg).evaluate(model, rows, collate)["loss"]
    assert result.step == 40 and after < 0.8 * before, (before, after)
