"""TwoStream-SLR on tiny clips: shapes, lengths, loss, gradients, configurations, head masking."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from models.two_stream import TwoStreamConfig, TwoStreamSLR
from models.visual_head import VisualHead

V = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> TwoStreamConfig:
    base = dict(num_classes=V, width=0.125, rgb_size=32, keypoint_size=16, heatmap_sigma=1.0, head_hidden=32,
                head_ff=64, lateral_kernel=(3, 3, 3))
    return TwoStreamConfig(**{**base, **kw})


def batch(B=2, T=16, H=40, W=36, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, T, 3, H, W, generator=g)
    kp = torch.rand(B, T, 133, 3, generator=g) * torch.tensor([W, H, 1.0])
    labels = torch.tensor([[3, 4, 1], [5, 1, 1]])[:B]
    return frames, torch.tensor([T, T - 5])[:B], kp, labels, torch.tensor([2, 1])[:B]


def test_two_stream_forward_backward_on_a_tiny_clip():
    torch.manual_seed(0)
    model = TwoStreamSLR(tiny())
    frames, lengths, kp, labels, label_lengths = batch()
    out = model(frames, lengths, kp)
    assert set(out["log_probs"]) == {"rgb", "keypoint", "fuse", "ensemble"}
    for lp in out["log_probs"].values():
        assert lp.shape == (2, 4, V)  # T/4
    assert out["lengths"].tolist() == [4, 2]  # floor(11 * 4 / 16)
    assert [a.shape for a in out["aux_log_probs"]["rgb"]] == [(2, 8, V), (2, 8, V)]  # blocks 2, 3: T/2
    assert [n.tolist() for n in out["aux_lengths"]["keypoint"]] == [[8, 5], [8, 5]]
    assert out["gloss_features"].shape == (2, 4, 32) and out["decode_head"] == "ensemble"
    probs = torch.stack([out["log_probs"][h].exp() for h in ("rgb", "keypoint", "fuse")]).mean(0)
    assert torch.allclose(out["log_probs"]["ensemble"].exp(), probs, atol=1e-6)

    total, parts = model.loss(out, labels, label_lengths)
    assert set(parts) == {"ctc_rgb", "ctc_rgb_aux", "ctc_keypoint", "ctc_keypoint_aux", "ctc_fuse", "kl", "infeasible", "total"}
    expected = (parts["ctc_rgb"] + 0.2 * parts["ctc_rgb_aux"] + parts["ctc_keypoint"] + 0.5 * parts["ctc_keypoint_aux"]
                + parts["ctc_fuse"] + parts["kl"])
    assert math.isclose(float(total.detach()), float(expected), rel_tol=1e-5) and parts["infeasible"] == 0
    ctc_only, no_kl = model.loss(out, labels, label_lengths, distill_weight=0.0)  # the trainer's KL warm-up
    assert "kl" not in no_kl and math.isclose(float(ctc_only.detach()), float(expected - parts["kl"]), rel_tol=1e-5)
    quarter, _ = model.loss(out, labels, label_lengths, distill_weight=0.25)
    assert math.isclose(float(quarter.detach()), float(expected - 0.75 * parts["kl"]), rel_tol=1e-5)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []  # every module takes part (DDP without find_unused_parameters)


def test_lateral_connections_carry_keypoints_into_the_rgb_head():
    frames, lengths, kp, _, _ = batch(seed=1)
    kp2 = kp.clone()
    kp2[..., :2] = kp2[..., :2].flip(1)  # play the keypoints backwards
    for lateral, changes in [(True, True), (False, False)]:
        torch.manual_seed(0)
        model = TwoStreamSLR(tiny(lateral=lateral, dropout=0.0))  # train mode: BN batch statistics
        with torch.no_grad():
            a = model(frames, lengths, kp)["log_probs"]["rgb"]
            b = model(frames, lengths, kp2)["log_probs"]["rgb"]
        assert (not torch.allclose(a, b)) == changes


def test_zero_initialised_laterals_start_the_streams_independent_and_still_learn():
    frames, lengths, kp, labels, label_lengths = batch(seed=1)
    kp2 = kp.clone()
    kp2[..., :2] = kp2[..., :2].flip(1)
    torch.manual_seed(0)
    model = TwoStreamSLR(tiny(lateral_init="zero", dropout=0.0))
    assert all(not c.weight.any() for c in [*model.rgb_to_keypoint, *model.keypoint_to_rgb])
    with torch.no_grad():
        assert torch.equal(model(frames, lengths, kp)["log_probs"]["rgb"], model(frames, lengths, kp2)["log_probs"]["rgb"])
    total, _ = model.loss(model(frames, lengths, kp), labels, label_lengths)
    total.backward()
    assert all(c.weight.grad.abs().sum() > 0 for c in [*model.rgb_to_keypoint, *model.keypoint_to_rgb])


def test_single_stream_and_keypoint_only_configurations():
    frames, lengths, kp, labels, label_lengths = batch()
    rgb = TwoStreamSLR(tiny(streams=("rgb",), pyramid=False))
    out = rgb(frames, lengths)
    assert set(out["log_probs"]) == {"rgb"} and out["decode_head"] == "rgb" and out["aux_log_probs"] == {}
    total, parts = rgb.loss(out, labels, label_lengths)
    assert set(parts) == {"ctc_rgb", "infeasible", "total"}
    total.backward()

    kpo = TwoStreamSLR(tiny(streams=("keypoint",)))
    out = kpo(None, lengths, kp, frame_size=(40, 36))
    assert set(out["log_probs"]) == {"keypoint"} and len(out["aux_log_probs"]["keypoint"]) == 2
    kpo.loss(out, labels, label_lengths)[0].backward()
    with pytest.raises(ValueError, match="frame_size"):
        kpo(None, lengths, kp)


def test_infeasible_labels_are_counted():
    model = TwoStreamSLR(tiny(streams=("rgb",)))
    frames, lengths, _, _, _ = batch()
    out = model(frames, lengths)
    labels = torch.tensor([[3, 4, 5, 6, 7], [5, 1, 1, 1, 1]])
    _, parts = model.loss(out, labels, torch.tensor([5, 1]))  # 5 glosses in 4 steps
    assert parts["infeasible"] == 1


def test_config_is_validated():
    with pytest.raises(ValidationError, match="extra"):
        TwoStreamConfig(num_classes=5, widht=0.5)
    with pytest.raises(ValidationError, match="multiple of keypoint_size"):
        TwoStreamConfig(num_classes=5, rgb_size=96, keypoint_size=40)
    with pytest.raises(ValidationError, match="gloss_feature_head"):
        TwoStreamConfig(num_classes=5, streams=("rgb",), gloss_feature_head="fuse")


def test_frozen_rgb_block_keeps_weights_and_statistics():
    model = TwoStreamSLR(tiny(freeze_rgb_blocks=1)).train()
    block1 = model.backbones["rgb"].block1
    assert not block1.training and all(not p.requires_grad for p in block1.parameters())
    before = block1.conv.bn_s.running_mean.clone()
    frames, lengths, kp, _, _ = batch()
    model(frames, lengths, kp)
    assert torch.equal(before, block1.conv.bn_s.running_mean)


def test_head_outputs_do_not_depend_on_batch_padding():
    torch.manual_seed(0)
    head = VisualHead(8, V, hidden_size=16, ff_size=24).eval()
    x = torch.randn(2, 10, 8)
    with torch.no_grad():
        both = head(x, torch.tensor([10, 6]))
        alone = head(x[1:, :6], torch.tensor([6]))
    assert torch.allclose(both["log_probs"][1, :6], alone["log_probs"][0], atol=1e-5)
    head.train()
    out = head(x, torch.tensor([10, 6]))
    valid = torch.arange(10)[None] < torch.tensor([[10], [6]])
    expected = 0.1 * head.proj(x)[valid].mean(0)  # BatchNorm momentum 0.1 from running mean 0
    assert torch.allclose(head.norm1.bn.running_mean, expected, atol=1e-5)  # padded steps not counted
    assert out["features"].shape == (2, 10, 16)
