"""DAVIS J and F on hand-computed cases, and sequence loading with its bad inputs."""

import numpy as np
import pytest
from PIL import Image

from ssl_modal.video.davis import contour_f, disk, list_sequences, load_sequence, region_j, seg2bmap, sequence_scores
from ssl_modal.video.io import VideoReadError
from tests.video.conftest import SHARED_VIDEO, need


def square(h=10, w=10, top=2, left=2, size=4):
    m = np.zeros((h, w), bool)
    m[top : top + size, left : left + size] = True
    return m


def test_region_j_hand_computed():
    gt = square()
    assert region_j(gt, gt) == 1.0
    assert region_j(square(left=4), gt) == pytest.approx(8 / 24)  # overlap 4x2, union 16+16-8
    assert region_j(np.zeros_like(gt), gt) == 0.0
    assert region_j(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # both empty: DAVIS convention


def test_seg2bmap_hand_computed():
    b = seg2bmap(square())
    # pixels whose east, south or south-east neighbour differs: the ring rows/cols 1..5 around the 4x4 square
    # at rows/cols 2..5 (outside on the top/left, inside on the bottom/right; (1,5) and (5,1) via south/east)
    expected = np.zeros((10, 10), bool)
    expected[1:6, 1:6] = True
    expected[2:5, 2:5] = False
    assert np.array_equal(b, expected) and b.sum() == 16


def test_disk_is_the_skimage_disk():
    assert disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).sum() == 13


def test_contour_f_hand_computed():
    gt = square(10, 20)
    assert contour_f(gt, gt) == 1.0
    # prediction = gt + a far square: every gt boundary pixel is matched (recall 1), half the predicted
    # boundary is (precision 16/32); tolerance ceil(0.008 * diag(10x20)=22.4) = 1 pixel
    pred = gt | square(10, 20, left=12)
    assert contour_f(pred, gt) == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert region_j(pred, gt) == pytest.approx(0.5)
    # a 1-pixel shift is within the 1-pixel tolerance; a 3-pixel shift of a thin bar is not
    assert contour_f(square(10, 20, left=3), gt) == 1.0
    assert contour_f(np.zeros_like(gt), gt) == 0.0  # nothing predicted: precision 1, recall 0
    assert contour_f(gt, np.zeros_like(gt)) == 0.0  # nothing there: precision 0
    assert contour_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        contour_f(gt, gt[:5])


def naive_f(pred, gt, r):
    """Boundary F by brute-force distances (a boundary pixel matches if one of the other's is within r)."""
    pb, gb = np.argwhere(seg2bmap(pred)), np.argwhere(seg2bmap(gt))

    def matched(a, b):
        return sum(((b - p) ** 2).sum(1).min() <= r * r for p in a) if len(b) else 0

    precision, recall = matched(pb, gb) / len(pb), matched(gb, pb) / len(gb)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_contour_f_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = np.zeros((40, 60), bool)
        pred = np.zeros((40, 60), bool)
        for m in (gt, pred):
            y, x = rng.integers(5, 30), rng.integers(5, 45)
            m[y : y + rng.integers(4, 10), x : x + rng.integers(4, 14)] = True
        assert contour_f(pred, gt, bound_th=3) == pytest.approx(naive_f(pred, gt, 3))


def test_sequence_scores_leave_out_first_and_last_frame():
    gt = np.stack([square()] * 4)
    pred = np.stack([square(), square(left=4), np.zeros((10, 10), bool), np.zeros((10, 10), bool)])
    s = sequence_scores(pred, gt)
    assert s["J_frames"] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert s["J"] == pytest.approx((1 / 3 + 0.0) / 2)
    assert len(s["F_frames"]) == 4 and s["F"] == pytest.approx(np.mean(s["F_frames"][1:3]))
    with pytest.raises(ValueError, match="differ in shape"):
        sequence_scores(pred[:3], gt)


def test_load_sequence(tiny_davis):
    seq = load_sequence(tiny_davis, "square", max_frames=5)
    assert seq.frames.shape == (5, 48, 64, 3) and seq.masks.shape == (5, 48, 64)
    assert seq.masks[0].sum() == 16 * 16
    assert list_sequences(tiny_davis) == ["square"]


def test_mask_of_another_size_than_its_frame(tiny_davis):
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tiny_davis / "Annotations" / "square" / "00003.png")
    with pytest.raises(VideoReadError, match=r"00003.png: mask is 32x24 \(WxH\) but its frame is 64x48"):
        load_sequence(tiny_davis, "square")


def test_missing_mask(tiny_davis):
    (tiny_davis / "Annotations" / "square" / "00002.png").unlink()
    with pytest.raises(VideoReadError, match=r"00002.png: expected the mask of frame 00002.jpg, found no file"):
        load_sequence(tiny_davis, "square")


def test_missing_davis_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="DAVIS folder not found: expected .*JPEGImages"):
        list_sequences(tmp_path)


def test_shared_davis_sequence_slice():
    root = need(SHARED_VIDEO / "davis")
    seq = load_sequence(root, "dog", max_frames=3)
    assert seq.frames.shape == (3, 240, 427, 3)
    assert 0.02 < seq.masks.mean() < 0.4  # dog: mean foreground fraction 0.11
