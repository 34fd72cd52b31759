"""Gaussian keypoint heatmaps: subset, peak position, sigma, score-0 points."""

from __future__ import annotations

import math

import pytest
import torch

from models.heatmaps import PUBLIC_79, keypoint_indices, render_heatmaps


def test_public_subset_is_79_points_in_the_papers_order():
    idx = keypoint_indices(PUBLIC_79)
    assert len(idx) == 79 and len(set(idx)) == 79
    assert idx[:3] == [23, 26, 29] and idx[15] == 68  # 16 face points
    assert idx[16:58] == list(range(91, 133))  # both hands
    assert idx[58:68] == list(range(71, 91, 2))  # mouth
    assert idx[68:] == list(range(11))  # upper body
    with pytest.raises(ValueError, match="unknown keypoint parts"):
        keypoint_indices(["hands"])


def test_peak_at_keypoint_and_sigma_in_map_pixels():
    # Frame 200 x 100 (H x W), map 40 x 20: scale 0.2; pixel centre (x + .5) * .2 - .5.
    kp = torch.zeros(1, 2, 133, 3)
    kp[0, 0, 5] = torch.tensor([37.0, 62.0, 0.9])  # -> map (x, y) = (7.0, 12.0)
    kp[0, 1, 5] = torch.tensor([12.0, 187.0, 0.5])  # -> (2.0, 37.0)
    hm = render_heatmaps(kp, (200, 100), (40, 20), sigma=2.0, indices=[5, 6])
    assert hm.shape == (1, 2, 2, 40, 20)
    for t, (px, py) in enumerate([(7, 12), (2, 37)]):
        m = hm[0, 0, t]
        assert divmod(int(m.argmax()), 20) == (py, px)
        assert m[py, px].item() == pytest.approx(1.0)
        assert m[py, px + 2].item() == pytest.approx(math.exp(-0.5), rel=1e-5)  # one sigma away
        assert m[py - 2, px].item() == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert hm[0, 1].abs().sum() == 0  # point 6 has score 0


def test_score_threshold_zeroes_maps_and_batch_is_vectorised():
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(3, 4, 133, 3, generator=g) * torch.tensor([64.0, 48.0, 1.0])
    kp[1, 2, :, 2] = 0.0
    kp[2, 0, 100, 2] = 0.2
    hm = render_heatmaps(kp, (48, 64), (24, 32), sigma=1.5, indices=keypoint_indices(), threshold=0.3)
    assert hm.shape == (3, 79, 4, 24, 32)
    assert hm[1, :, 2].abs().sum() == 0
    assert hm[2, keypoint_indices().index(100), 0].abs().sum() == 0
    single = render_heatmaps(kp[2:3, 1:2], (48, 64), (24, 32), sigma=1.5, indices=keypoint_indices(), threshold=0.3)
    assert torch.allclose(single[0, :, 0], hm[2, :, 1])
    assert hm.max() <= 1.0 and hm.min() >= 0.0
    signed = render_heatmaps(kp, (48, 64), (24, 32), sigma=1.5, indices=keypoint_indices(), threshold=0.3, signed=True)
    assert torch.allclose(signed, hm * 2 - 1, atol=1e-6)
