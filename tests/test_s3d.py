"""S3D: shapes, valid lengths, strict loading of a checkpoint with the public key layout."""

from __future__ import annotations

import functools

import pytest
import torch

from models.s3d import S3D, load_s3d_checkpoint, valid_lengths

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# The public S3D (kylemin/S3D model.py, `S3D_kinetics400.pt`) written out independently of
# models/s3d.py: base index -> (kind, in, out) or the mixed block's (in, branch widths).
PUBLIC_LAYERS = {
    0: ("sep", 3, 64, 7), 2: ("basic", 64, 64), 3: ("sep", 64, 192, 3),
    5: ("mixed", 192, (64, 96, 128, 16, 32, 32)), 6: ("mixed", 256, (128, 128, 192, 32, 96, 64)),
    8: ("mixed", 480, (192, 96, 208, 16, 48, 64)), 9: ("mixed", 512, (160, 112, 224, 24, 64, 64)),
    10: ("mixed", 512, (128, 128, 256, 24, 64, 64)), 11: ("mixed", 512, (112, 144, 288, 32, 64, 64)),
    12: ("mixed", 528, (256, 160, 320, 32, 128, 128)), 14: ("mixed", 832, (256, 160, 320, 32, 128, 128)),
    15: ("mixed", 832, (384, 192, 384, 48, 128, 128)),
}


def _bn(prefix, c, tracked):
    d = {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,), f"{prefix}.running_var": (c,)}
    if tracked:
        d[f"{prefix}.num_batches_tracked"] = ()
    return d


def _basic(p, cin, cout, tracked):
    return {f"{p}.conv.weight": (cout, cin, 1, 1, 1), **_bn(f"{p}.bn", cout, tracked)}


def _sep(p, cin, cout, k, tracked):
    return {f"{p}.conv_s.weight": (cout, cin, 1, k, k), **_bn(f"{p}.bn_s", cout, tracked),
            f"{p}.conv_t.weight": (cout, cout, k, 1, 1), **_bn(f"{p}.bn_t", cout, tracked)}


def public_shapes(prefix="module.", tracked=False, num_classes=400) -> dict[str, tuple]:
    shapes = {}
    for i, layer in PUBLIC_LAYERS.items():
        p = f"{prefix}base.{i}"
        if layer[0] == "sep":
            shapes.update(_sep(p, layer[1], layer[2], layer[3], tracked))
        elif layer[0] == "basic":
            shapes.update(_basic(p, layer[1], layer[2], tracked))
        else:
            cin, (c0, c1r, c1, c2r, c2, c3) = layer[1], layer[2]
            shapes.update(_basic(f"{p}.branch0.0", cin, c0, tracked))
            shapes.update(_basic(f"{p}.branch1.0", cin, c1r, tracked))
            shapes.update(_sep(f"{p}.branch1.1", c1r, c1, 3, tracked))
            shapes.update(_basic(f"{p}.branch2.0", cin, c2r, tracked))
            shapes.update(_sep(f"{p}.branch2.1", c2r, c2, 3, tracked))
            shapes.update(_basic(f"{p}.branch3.1", cin, c3, tracked))
    shapes[f"{prefix}fc.0.weight"] = (num_classes, 1024, 1, 1, 1)
    shapes[f"{prefix}fc.0.bias"] = (num_classes,)
    return shapes


@functools.lru_cache(maxsize=None)
def _fake(prefix: str, tracked: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randint(0, 100, (), generator=g) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g))
            for k, s in public_shapes(prefix, tracked).items()}


def fake_checkpoint(prefix: str = "module.", tracked: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors under the public key names and shapes (a fresh dict each call)."""
    return dict(_fake(prefix, tracked))


def test_four_blocks_give_t_over_4_by_832_and_lengths():
    model = S3D(num_blocks=4).eval()
    assert model.block_channels == [64, 192, 480, 832]
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        blocks = model.forward_blocks(x)
        feats, lengths = model(x, torch.tensor([16, 9]))
    assert [tuple(b.shape[1:]) for b in blocks] == [(64, 8, 16, 16), (192, 8, 8, 8), (480, 8, 4, 4), (832, 4, 2, 2)]
    assert feats.shape == (2, 4, 832)
    assert lengths.tolist() == [4, 2]  # floor(9 * 4 / 16) = 2


def test_valid_lengths_formula_and_odd_lengths():
    assert valid_lengths(torch.tensor([0, 1, 7, 13, 50]), 50, 13).tolist() == [0, 0, 1, 3, 13]
    model = S3D(num_blocks=4, width=0.125).eval()
    with torch.no_grad():
        feats, lengths = model(torch.randn(1, 3, 13, 24, 24), torch.tensor([13]))
    assert feats.shape == (1, 4, model.out_channels)  # ceil(ceil(13 / 2) / 2)
    assert lengths.tolist() == [4]


def test_five_blocks_classify_and_width():
    model = S3D(num_blocks=5, width=0.25, num_classes=7).eval()
    assert model.out_channels == 256
    with torch.no_grad():
        assert model.classify(torch.randn(2, 3, 16, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="num_blocks=5"):
        S3D(num_blocks=4, num_classes=3)


def test_strict_load_of_public_kinetics_layout():
    ckpt = fake_checkpoint()
    model = S3D(num_blocks=5, num_classes=400)
    assert load_s3d_checkpoint(model, ckpt) == []
    own = model.state_dict()
    assert torch.equal(own["block1.conv.conv_s.weight"], ckpt["module.base.0.conv_s.weight"])
    assert torch.equal(own["block4.mixed_4b.branch1.1.conv_t.weight"], ckpt["module.base.8.branch1.1.conv_t.weight"])
    assert torch.equal(own["block5.mixed_5c.branch3.1.bn.running_var"], ckpt["module.base.15.branch3.1.bn.running_var"])
    assert torch.equal(own["classifier.bias"], ckpt["module.fc.0.bias"])

    four = S3D(num_blocks=4)
    dropped = load_s3d_checkpoint(four, ckpt)
    assert "classifier.weight" in dropped and all(k.startswith(("block5.", "classifier.")) for k in dropped)
    assert torch.equal(four.state_dict()["block4.mixed_4f.branch0.0.conv.weight"], ckpt["module.base.12.branch0.0.conv.weight"])


def test_load_papers_layout_with_prefix_and_keypoint_first_conv(tmp_path):
    # The papers' checkpoints: {"model_state": {"recognition_network.visual_backbone.backbone.base.N...": ...}}
    ckpt = fake_checkpoint(prefix="recognition_network.visual_backbone.backbone.", tracked=True)
    ckpt = {k: v for k, v in ckpt.items() if ".fc." not in k and not any(f"base.{i}." in k for i in (14, 15))}
    path = tmp_path / "s2g.ckpt"
    torch.save({"model_state": ckpt}, path)
    model = S3D(num_blocks=4)
    assert load_s3d_checkpoint(model, path) == []
    kp = S3D(in_channels=79, num_blocks=4)
    with pytest.raises(ValueError, match=r"shape: block1.conv.conv_s.weight"):
        load_s3d_checkpoint(kp, path)
    load_s3d_checkpoint(kp, path, exclude=("block1.conv.conv_s.weight",))
    assert torch.equal(kp.state_dict()["block1.conv.bn_s.weight"], ckpt["recognition_network.visual_backbone.backbone.base.0.bn_s.weight"])


def test_load_errors_name_the_problem():
    ckpt = fake_checkpoint()
    del ckpt["module.base.9.branch2.1.conv_s.weight"]
    with pytest.raises(ValueError, match=r"missing: block4.mixed_4c.branch2.1.conv_s.weight"):
        load_s3d_checkpoint(S3D(num_blocks=4), ckpt)
    with pytest.raises(ValueError, match=r"width 0.5"):
        load_s3d_checkpoint(S3D(num_blocks=4, width=0.5), fake_checkpoint())
    two = {**fake_checkpoint(prefix="rgb."), **fake_checkpoint(prefix="pose.")}
    with pytest.raises(ValueError, match="pass prefix="):
        load_s3d_checkpoint(S3D(num_blocks=4), two)
    load_s3d_checkpoint(S3D(num_blocks=4), two, prefix="pose.")


def test_cpu_fast_paths_match_plain_3d_ops(monkeypatch):
    import models.s3d as s3d

    torch.manual_seed(0)
    model = S3D(num_blocks=4, width=0.25)
    x = torch.randn(2, 3, 12, 40, 40)
    fast, _ = model(x)
    monkeypatch.setattr(s3d, "temporal_conv", lambda x, conv: conv(x))
    monkeypatch.setattr(s3d.MaxPool3dChannelsLast, "forward", torch.nn.MaxPool3d.forward)
    torch.manual_seed(0)
    plain, _ = S3D(num_blocks=4, width=0.25)(x)
    assert torch.allclose(fast, plain, atol=1e-4)


class _Opaque:
    pass


def test_checkpoint_with_arbitrary_objects_is_not_unpickled(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": fake_checkpoint(), "extra": _Opaque()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_s3d_checkpoint(S3D(num_blocks=4), path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_s3d_checkpoint(S3D(num_blocks=4), tmp_path / "missing.pt")
