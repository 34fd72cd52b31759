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


def test_sigma_per_axis_and_per_clip():
    kp = torch.zeros(2, 1, 133, 3)
    kp[:, 0, 5] = torch.tensor([37.0, 62.0, 1.0])  # frame 200 x 100 -> map 40 x 20: (7, 12)
    pair = render_heatmaps(kp, (200, 100), (40, 20), sigma=(2.0, 4.0), indices=[5])
    for b in range(2):
        m = pair[b, 0, 0]
        assert m[12, 9].item() == pytest.approx(math.exp(-0.5), rel=1e-5)  # 1 sigma_x = 2 px across
        assert m[16, 7].item() == pytest.approx(math.exp(-0.5), rel=1e-5)  # 1 sigma_y = 4 px down
    per_clip = render_heatmaps(kp, (200, 100), (40, 20), sigma=torch.tensor([[2.0, 4.0], [1.0, 3.0]]), indices=[5])
    assert torch.allclose(per_clip[0], pair[0], atol=1e-6)
    assert per_clip[1, 0, 0, 12, 8].item() == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert per_clip[1, 0, 0, 15, 7].item() == pytest.approx(math.exp(-0.5), rel=1e-5)
    same = render_heatmaps(kp, (200, 100), (40, 20), sigma=(2.0, 2.0), indices=[5])
    assert torch.allclose(same, render_heatmaps(kp, (200, 100), (40, 20), sigma=2.0, indices=[5]), atol=1e-6)
    with pytest.raises(ValueError, match="one value, a pair"):
        render_heatmaps(kp, (200, 100), (40, 20), sigma=torch.ones(3, 2))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        render_heatmaps(kp, (200, 100), (40, 20), sigma=(1.0, 0.0))


@pytest.mark.parametrize("train", [True, False])
def test_heatmap_width_follows_the_crop_as_the_public_code(train):
    """The public code draws each point's Gaussian with sigma 8 px on the whole 210 x 260 frame and
    crops/resizes that map with the RGB; `heatmap_sigma_follows_crop` gives the same maps: sigma at
    the evaluation view (8 x 112/210, 8 x 112/260), times the clip's crop_zoom."""
    import numpy as np

    from models.two_stream import TwoStreamConfig, TwoStreamSLR
    from pipelines.video_collate import VideoCollate, VideoCollateConfig

    H, W, size = 260, 210, 112
    row = {"name": "v", "gloss": "A", "num_frames": 4, "height": H, "width": W,
           "frames": np.zeros((4, H, W, 3), np.uint8), "keypoints": np.zeros((4, 133, 3), np.float32)}
    row["keypoints"][:, 0] = [[100.0, 130.0, 1.0], [60.0, 90.0, 1.0], [150.0, 200.0, 1.0], [105.5, 120.25, 1.0]]
    collate = VideoCollate(VideoCollateConfig(height=224, width=224, temporal_scale=(1, 1), color_jitter_p=0), train=train, generator=4)
    plan = collate.plan([row])[0]
    batch = collate([row], [plan])
    model = TwoStreamSLR(TwoStreamConfig(num_classes=5, streams=["keypoint"], width=0.0625, keypoint_size=size,
                                         keypoint_parts=["pose"], heatmap_sigma=(8 * size / W, 8 * size / H),
                                         heatmap_sigma_follows_crop=True, pyramid=False, head_hidden=8, head_ff=8))
    ours = (model._inputs(None, batch["keypoints"], (224, 224), batch["crop_zoom"] if train else None)["keypoint"] + 1) / 2
    # the public map, sampled at the frame position of each map pixel's centre
    x0, y0, w, h = plan["box"]
    fx = x0 + (torch.arange(size) + 0.5) * w / size - 0.5
    fy = y0 + (torch.arange(size) + 0.5) * h / size - 0.5
    for t, k in enumerate(plan["indices"]):
        px, py, _ = row["keypoints"][k, 0]
        public = torch.exp(-((fy[:, None] - py) ** 2 + (fx[None, :] - px) ** 2) / (2 * 8.0**2))
        assert torch.allclose(ours[0, 0, t], public, atol=1e-4)
    assert (plan["box"][2], plan["box"][3]) != (W, H) if train else plan["box"] == (0, 0, W, H)
    # the default (option off): crop_zoom is ignored, every clip gets heatmap_sigma in map pixels
    plain = TwoStreamSLR(model.config.model_copy(update={"heatmap_sigma_follows_crop": False}))
    fixed = render_heatmaps(batch["keypoints"], (224, 224), (size, size), (8 * size / W, 8 * size / H), model.kp_indices, signed=True)
    assert torch.equal(plain._inputs(None, batch["keypoints"], (224, 224), batch["crop_zoom"])["keypoint"], fixed)
    assert train == (not torch.allclose((fixed + 1) / 2, ours, atol=1e-3))
