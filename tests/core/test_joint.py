"""Joint-embedding losses against naive loop references (values and gradients), and the objective's behaviour."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_modal.core.config import ConfigError
from ssl_modal.core.joint import (
    JointConfig,
    JointEmbedding,
    barlow_twins_loss,
    byol_loss,
    info_nce,
    positive_mask,
    sup_con,
    vicreg_loss,
)
from ssl_modal.core.views import TwoViews, build_pipeline
from ssl_modal.vectors import build_vector_model


def naive_info_nce(a, b, t):
    z = [x / x.norm() for x in torch.cat([a, b])]
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = sum(torch.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        total = total - torch.log(torch.exp(z[i] @ z[j] / t) / denom)
    return total / (2 * n)


def naive_sup_con(a, b, labels, t, groups=None):
    z = [x / x.norm() for x in torch.cat([a, b])]
    lab = list(labels) * 2
    m = len(z)
    grp = list(range(m)) if groups is None else list(groups)  # no groups: every view its own
    total = 0.0
    for i in range(m):
        denom = sum(torch.exp(z[i] @ z[k] / t) for k in range(m) if k != i)
        partner = (i + m // 2) % m
        pos = [j for j in range(m) if j != i and lab[j] == lab[i] and (grp[j] != grp[i] or j == partner)]
        total = total - sum(torch.log(torch.exp(z[i] @ z[j] / t) / denom) for j in pos) / len(pos)
    return total / m


def naive_byol(p, z):
    return sum(2 - 2 * (p[i] @ z[i]) / (p[i].norm() * z[i].norm()) for i in range(p.shape[0])) / p.shape[0]


def naive_barlow(a, b, lambd):
    n, d = a.shape
    na = [(a[:, j] - a[:, j].mean()) / (a[:, j].std(unbiased=False) + 1e-5) for j in range(d)]
    nb = [(b[:, j] - b[:, j].mean()) / (b[:, j].std(unbiased=False) + 1e-5) for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = (na[i] * nb[j]).sum() / n
            loss = loss + ((1 - c) ** 2 if i == j else lambd * c**2)
    return loss


def naive_vicreg(a, b, s, v, c):
    n, d = a.shape
    inv = sum(((a[i] - b[i]) ** 2).sum() for i in range(n)) / (n * d)
    var = 0.0
    cov = 0.0
    for x in (a, b):
        xc = x - x.mean(0)
        for j in range(d):
            var = var + torch.relu(1 - torch.sqrt((xc[:, j] ** 2).sum() / (n - 1) + 1e-4)) / (2 * d)
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = cov + ((xc[:, i] * xc[:, j]).sum() / (n - 1)) ** 2 / d
    return s * inv + v * var + c * cov


LABELS = torch.tensor([0, 1, 0, 2, 1, 0])  # pairs 0, 2 and 5 share a label, 1 and 4 another
VIEW_GROUPS = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0])  # a's views, then b's: pairs 0 and 2 mixed
CASES = [
    ("info_nce", lambda a, b: info_nce(a, b, 0.2), lambda a, b: naive_info_nce(a, b, 0.2)),
    ("sup_con", lambda a, b: sup_con(a, b, LABELS, 0.2), lambda a, b: naive_sup_con(a, b, LABELS.tolist(), 0.2)),
    (
        "sup_con_groups",
        lambda a, b: sup_con(a, b, LABELS, 0.2, VIEW_GROUPS),
        lambda a, b: naive_sup_con(a, b, LABELS.tolist(), 0.2, VIEW_GROUPS.tolist()),
    ),
    ("byol", byol_loss, naive_byol),
    ("barlow", lambda a, b: barlow_twins_loss(a, b, 0.01), lambda a, b: naive_barlow(a, b, 0.01)),
    ("vicreg", lambda a, b: vicreg_loss(a, b, 25, 25, 1), lambda a, b: naive_vicreg(a, b, 25, 25, 1)),
]


@pytest.mark.parametrize("name,fast,naive", CASES, ids=[c[0] for c in CASES])
def test_loss_matches_naive_reference_in_value_and_gradient(name, fast, naive):
    g = torch.Generator().manual_seed(7)
    a = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    got = fast(a, b)
    want = naive(a, b)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-7)
    ga, gb = torch.autograd.grad(got, (a, b), allow_unused=True)
    wa, wb = torch.autograd.grad(want, (a, b), allow_unused=True)
    torch.testing.assert_close(ga, wa.to(ga.dtype), rtol=1e-5, atol=1e-6)
    if name == "byol":  # the target side is a constant
        assert gb is None or torch.count_nonzero(gb) == 0
    else:
        torch.testing.assert_close(gb, wb.to(gb.dtype), rtol=1e-5, atol=1e-6)


def test_info_nce_is_low_for_matched_views_and_high_for_random_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 16, generator=g)
    assert info_nce(a, a + 0.01 * torch.randn(32, 16, generator=g)) < 0.5
    assert info_nce(a, torch.randn(32, 16, generator=g)) > math.log(32)


def test_sup_con_is_info_nce_when_every_label_differs_and_pulls_same_label_views():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    torch.testing.assert_close(sup_con(a, b, torch.arange(8), 0.3), info_nce(a, b, 0.3))
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    grouped = torch.cat([torch.ones(4, 5), -torch.ones(4, 5)]) + 0.01 * a
    assert sup_con(grouped, grouped, labels) == pytest.approx(math.log(7), abs=1e-3)  # 7 positives alike
    assert sup_con(grouped, grouped, torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])) > 5  # positives across groups
    with pytest.raises(ValueError, match="expected 8 labels"):
        sup_con(a, b, torch.arange(4))


def test_sup_con_with_groups_keeps_only_other_group_positives_and_the_partner():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    one_group = torch.zeros(12, dtype=torch.long)  # every same-label view is of the anchor's group: partner only
    torch.testing.assert_close(sup_con(a, b, labels, 0.3, one_group), info_nce(a, b, 0.3))
    groups = torch.tensor([0, 1, 2, 0, 1, 2, 1, 2, 0, 1, 2, 0])  # each partner of another group than its clip
    mask = positive_mask(labels, groups)
    assert mask[0].nonzero().flatten().tolist() == [1, 2, 6, 7]  # label 0, not of group 0 (6: the partner)
    assert not mask[0, 8] and not mask[0, 0] and not mask[0, 3]  # 8: label 0 in group 0; 3: label 1
    torch.testing.assert_close(sup_con(a, b, labels, 0.3, torch.arange(12)), sup_con(a, b, labels, 0.3))
    with pytest.raises(ValueError, match="expected 12 groups"):
        sup_con(a, b, labels, 0.3, torch.zeros(6, dtype=torch.long))


def _tiny_simclr():
    """A tiny vector encoder, its pooled width and a SimCLR config, for the label tests below."""
    encoder = build_vector_model({"dim": 8}).encoder
    return encoder, encoder.net[-1].out_features, JointConfig(method="simclr", hidden=16, dim=8)


def test_joint_objective_with_labels_uses_sup_con_and_needs_simclr():
    torch.manual_seed(0)
    encoder, dim, cfg = _tiny_simclr()
    plain = JointEmbedding(cfg, dim, _vector_views())
    labelled = JointEmbedding(cfg, dim, _vector_views(), labels_key="cluster")
    labelled.load_state_dict(plain.state_dict())
    x = torch.randn(6, 8)
    distinct = labelled(encoder, {"x": x, "cluster": torch.arange(6)})
    torch.testing.assert_close(distinct["loss"], plain(encoder, {"x": x})["loss"])  # same views: same generator
    assert distinct["positives"] == 1
    shared = labelled(encoder, {"x": x, "cluster": torch.tensor([0, 0, 0, 1, 1, 2])})
    assert shared["positives"] == pytest.approx((5 * 3 + 3 * 2 + 1) / 6)
    with pytest.raises(KeyError, match="needs batch\\['cluster'\\]"):
        labelled(encoder, {"x": x})
    with pytest.raises(ConfigError, match="need the simclr method, found 'byol'"):
        JointEmbedding(JointConfig(method="byol"), dim, _vector_views(), encoder=encoder, labels_key="cluster")


def test_joint_objective_with_groups_drops_same_group_positives():
    torch.manual_seed(0)
    encoder, dim, cfg = _tiny_simclr()
    plain = JointEmbedding(cfg, dim, _vector_views())
    grouped = JointEmbedding(cfg, dim, _vector_views(), labels_key="cluster", groups_key="grp")
    grouped.load_state_dict(plain.state_dict())
    x, cluster = torch.randn(6, 8), torch.tensor([0, 0, 0, 1, 1, 2])
    same = grouped(encoder, {"x": x, "cluster": cluster, "grp": torch.zeros(6, dtype=torch.long)})
    assert same["positives"] == 1  # the views carry the batch's groups: one group leaves the partner only
    torch.testing.assert_close(same["loss"], plain(encoder, {"x": x})["loss"])
    mixed = grouped(encoder, {"x": x, "cluster": cluster, "grp": torch.tensor([0, 1, 0, 0, 1, 1])})
    assert mixed["positives"] == pytest.approx((3 + 5 + 3 + 3 + 3 + 1) / 6)  # other-group views of its cluster + 1
    with pytest.raises(KeyError, match="needs 'grp' in both views"):
        grouped(encoder, {"x": x, "cluster": cluster})
    with pytest.raises(ConfigError, match="need labels per pair"):
        JointEmbedding(cfg, dim, _vector_views(), groups_key="grp")


def test_label_classifier_adds_its_weighted_cross_entropy_on_the_pooled_vectors():
    torch.manual_seed(0)
    encoder, dim, cfg = _tiny_simclr()
    torch.manual_seed(1)
    plain = JointEmbedding(cfg, dim, _vector_views(), labels_key="cluster")
    torch.manual_seed(1)
    headed = JointEmbedding(cfg, dim, _vector_views(), labels_key="cluster", num_labels=3, label_weight=0.5)
    torch.testing.assert_close(headed.projector.state_dict(), plain.projector.state_dict())  # head built last
    x, cluster = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    got, base = (
        headed(encoder, {"x": x, "cluster": cluster}),
        plain(encoder, {"x": x, "cluster": cluster}),
    )  # same views
    assert got["label_ce"] > 0 and "label_ce" not in base
    torch.testing.assert_close(got["loss"], base["loss"] + 0.5 * got["label_ce"])
    got["loss"].backward()
    assert headed.label_head is not None and headed.label_head.weight.grad is not None
    with pytest.raises(ConfigError, match="label classifier needs labels per pair and >= 2 labels"):
        JointEmbedding(cfg, dim, _vector_views(), num_labels=3, label_weight=0.5)


def _vector_views():
    def noise(scale: float = 0.1):
        def step(batch, generator):
            x = batch["x"]
            return {**batch, "x": x + scale * torch.randn(x.shape, generator=generator, device=x.device)}

        return step

    return TwoViews(build_pipeline([{"name": "noise", "scale": 0.3}], {"noise": noise}))


@pytest.mark.parametrize("method", ["simclr", "byol", "barlow", "vicreg"])
def test_joint_objective_trains_and_byol_target_follows_by_ema(method):
    torch.manual_seed(0)
    base = build_vector_model({"dim": 8, "objectives": {"masked": 1.0}})
    encoder = base.encoder
    dim = encoder(base.collate([torch.zeros(8).numpy()] * 2)).pooled.shape[-1]
    objective = JointEmbedding(JointConfig(method=method, hidden=32, dim=16), dim, _vector_views(), encoder=encoder)
    from ssl_modal import SSLModel

    model = SSLModel(encoder, {"joint": objective})
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(64, 8)
    losses = []
    for step in range(30):
        out = model({"x": x})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.on_step_end(step + 1, 30)
        losses.append(float(out["loss"].detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, (method, losses)
    if method == "byol":
        online = torch.cat([p.detach().flatten() for p in encoder.parameters()])
        target = torch.cat([p.flatten() for p in objective.target_encoder.parameters()])
        assert not torch.equal(online, target)  # moved by EMA, not copied
        assert all(not p.requires_grad for p in objective.target_encoder.parameters())
        assert any(k.startswith("objectives.joint.target_encoder.") for k in model.state_dict())
        assert objective.momentum(0, 30) == pytest.approx(0.99)
        assert objective.momentum(30, 30) == pytest.approx(1.0)


def test_config_and_view_errors_name_the_key():
    with pytest.raises(ConfigError, match="joint.method.*found 'simsiam'"):
        JointConfig(method="simsiam")
    with pytest.raises(ConfigError, match=r"model.views\[0\]: unknown view step 'nois', did you mean 'noise'"):
        build_pipeline([{"name": "nois"}], {"noise": lambda scale=0.1: None})
    with pytest.raises(ConfigError, match=r"unknown parameter 'scal', did you mean 'scale'"):
        build_pipeline([{"name": "noise", "scal": 1}], {"noise": lambda scale=0.1: None})
    with pytest.raises(ValueError, match="needs the online encoder"):
        JointEmbedding(JointConfig(method="byol"), 4, _vector_views())


def test_views_are_reproducible_from_the_generator_and_differ_between_the_two_views():
    views = _vector_views()
    batch = {"x": torch.zeros(4, 3)}
    a1, b1 = views(batch, torch.Generator().manual_seed(3))
    a2, b2 = views(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a1["x"], a2["x"]) and torch.equal(b1["x"], b2["x"])
    assert not torch.equal(a1["x"], b1["x"])
    assert torch.equal(batch["x"], torch.zeros(4, 3))  # the input batch is not modified
    assert F.mse_loss(a1["x"], b1["x"]) > 0


def test_byol_target_survives_checkpoint_and_resume_exactly(tmp_path):
    from ssl_modal import SSLModel, Trainer
    from ssl_modal.core.checkpoint import load_checkpoint, step_checkpoints
    from tests.core.train_toy import toy_data
    from tests.train_configs import quiet_config

    def build():
        torch.manual_seed(0)
        encoder = build_vector_model({"dim": 16}).encoder
        objective = JointEmbedding(
            JointConfig(method="byol", hidden=32, dim=16),
            encoder.net[-1].out_features,
            _vector_views(),
            encoder=encoder,
        )
        return SSLModel(encoder, {"byol": objective})

    def collate(items):
        return {"x": torch.as_tensor(np.stack(items))}

    def fit(out):
        cfg = quiet_config(
            out,
            max_steps=10,
            batch_size=32,
            learning_rate=1e-3,
            warmup_steps=2,
            log_every=5,
            checkpoint_every=5,
        )
        return Trainer(cfg).fit(build(), toy_data(), collate)

    fit(tmp_path)
    full = load_checkpoint(tmp_path / "model.pt")["model"]
    step_checkpoints(tmp_path / "checkpoints")[0].unlink()  # keep step 5 only: as if killed after it
    (tmp_path / "model.pt").unlink()
    fit(tmp_path)
    resumed = load_checkpoint(tmp_path / "model.pt")["model"]
    assert any(k.startswith("objectives.byol.target_encoder.") for k in full)
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)
