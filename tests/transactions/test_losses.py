"""Pure losses and corruptions of the transaction objectives against naive loop references."""

import math

import torch
import torch.nn.functional as F

from ssl_modal.transactions.losses import (
    gather_events,
    hide_fields,
    masked_field_loss,
    multi_positive_info_nce,
    order_loss,
    shuffle_permutation,
    slice_indices,
    swap_permutation,
)


def naive_info_nce(z, groups, t):
    n, total, anchors = len(z), 0.0, 0
    for i in range(n):
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(n) if a != i)
        pos = [p for p in range(n) if p != i and groups[p] == groups[i]]
        if not pos:
            continue
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_info_nce_matches_naive_reference_with_many_views_and_lone_rows():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(11, 5, generator=g), dim=-1)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4])  # groups 3 and 4 have no positive
    got = multi_positive_info_nce(z, groups, 0.2)
    assert abs(float(got) - naive_info_nce(z, groups, 0.2)) < 1e-5


def test_info_nce_two_views_is_nt_xent():
    g = torch.Generator().manual_seed(1)
    a, b = F.normalize(torch.randn(4, 3, generator=g), dim=-1), F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    z = torch.stack([a, b], 1).reshape(8, 3)
    groups = torch.arange(4).repeat_interleave(2)
    sim = z @ z.T / 0.5
    sim.fill_diagonal_(float("-inf"))
    target = torch.arange(8) ^ 1  # partner index
    assert torch.allclose(multi_positive_info_nce(z, groups, 0.5), F.cross_entropy(sim, target), atol=1e-6)


def test_masked_field_loss_and_accuracy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 2.0]])
    targets = torch.tensor([0, 2, 2])
    loss, acc = masked_field_loss(logits, targets)
    naive = -sum(math.log(math.exp(logits[i, targets[i]]) / sum(math.exp(v) for v in logits[i])) for i in range(3)) / 3
    assert abs(float(loss) - naive) < 1e-6 and abs(float(acc) - 2 / 3) < 1e-6
    empty_loss, _ = masked_field_loss(logits[:0], targets[:0])
    assert float(empty_loss) == 0.0


def test_order_loss_uses_only_valid_rows():
    logits, labels = torch.tensor([3.0, -2.0, 100.0]), torch.tensor([True, False, False])
    loss, acc = order_loss(logits, labels, torch.tensor([True, True, False]))
    naive = (-math.log(1 / (1 + math.exp(-3.0))) - math.log(1 - 1 / (1 + math.exp(2.0)))) / 2
    assert abs(float(loss) - naive) < 1e-6 and float(acc) == 1.0


def test_swap_permutation_swaps_two_adjacent_blocks_and_keeps_padding():
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([10, 6, 3, 12])
    perm = swap_permutation(lengths, 12, 0.5, g)
    for row, n in enumerate(lengths.tolist()):
        p = perm[row].tolist()
        assert sorted(p) == list(range(12)) and p[n:] == list(range(n, 12))  # padding untouched
        moved = [i for i in range(n) if p[i] != i]
        assert moved, "a row of >= 3 events must change"
        s, e = moved[0], moved[-1] + 1
        block = p[s:e]  # must be the second block followed by the first
        cut = block[0] - s
        assert block == list(range(s + cut, e)) + list(range(s, s + cut))


def test_shuffle_permutation_permutes_only_inside_one_span():
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([20, 8])
    perm = shuffle_permutation(lengths, 20, 0.5, g)
    for row, n in enumerate(lengths.tolist()):
        p = perm[row].tolist()
        assert sorted(p) == list(range(20)) and p[n:] == list(range(n, 20))
        moved = [i for i in range(20) if p[i] != i]
        if moved:
            assert max(moved) - min(moved) + 1 <= round(n * 0.5)
            assert set(p[min(moved) : max(moved) + 1]) == set(range(min(moved), max(moved) + 1))


def test_slice_indices_are_contiguous_inside_each_row():
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([30, 5, 1])
    index, mask, rows = slice_indices(lengths, 3, 0.3, 0.8, 10, g)
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i in range(len(rows)):
        n = int(mask[i].sum())
        idx = index[i, :n].tolist()
        src = int(lengths[rows[i]])
        assert 1 <= n <= min(10, src) and idx == list(range(idx[0], idx[0] + n)) and idx[-1] < src


def test_gather_and_hide_leave_input_untouched():
    batch = {
        "cat": {"type": torch.tensor([[3, 4, 5, 0]])},
        "num": {"forward": torch.tensor([[1.0, 2.0, 3.0, 0.0]])},
        "mask": torch.tensor([[True, True, True, False]]),
        "lengths": torch.tensor([3]),
    }
    g = gather_events(batch, torch.tensor([[2, 1, 0, 3]]))
    assert g["cat"]["type"].tolist() == [[5, 4, 3, 0]] and g["num"]["forward"].tolist() == [[3.0, 2.0, 1.0, 0.0]]
    hidden = torch.tensor([[False, True, False, False]])
    h = hide_fields(batch, {"type": hidden}, {"forward": hidden}, mask_id=1)
    assert h["cat"]["type"].tolist() == [[3, 1, 5, 0]] and h["num"]["forward"].tolist() == [[1.0, 0.0, 3.0, 0.0]]
    assert h["num_masked"]["forward"].tolist() == hidden.tolist()
    assert batch["cat"]["type"].tolist() == [[3, 4, 5, 0]]
