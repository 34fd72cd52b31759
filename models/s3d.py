"""S3D: separable 3D convolutions with Inception-style mixed blocks (Xie et al., ECCV 2018).

The layout follows the public PyTorch S3D that ships the Kinetics-400 weights (kylemin/S3D,
`S3D_kinetics400.pt`), which the papers' code (FangyunWei/SLRT) also uses:

    block  layers                                   channels   T      H, W (224 in)
    1      SepConv 7x7x7 stride 2                   64         T/2    112
    2      maxpool 1x3x3/2, Conv 1x1x1, SepConv 3   192        T/2    56
    3      maxpool 1x3x3/2, Mixed_3b, Mixed_3c      480        T/2    28
    4      maxpool 3x3x3/2, Mixed_4b .. Mixed_4f    832        T/4    14
    5      maxpool 2x2x2/2, Mixed_5b, Mixed_5c      1024       T/8    7

A separable conv is a 1xkxk spatial conv then a kx1x1 temporal conv, each followed by
BatchNorm(eps=1e-3, momentum=1e-3) and ReLU. Mixed blocks have four branches (1x1; 1x1 -> sep 3;
1x1 -> sep 3; maxpool 3 -> 1x1) concatenated on channels, without gating.

Four blocks give T/4 x 832 features for continuous recognition; five blocks + pooling + a 1x1x1
classifier give clip logits (Kinetics action classification, isolated signs). `width` scales
every channel count (CPU defaults use 1/4 .. 1/8); only width 1.0 can load the public weights.

BatchNorm statistics include padded frames of a batch, as in the public code (the backbone has
no notion of padding); keep padding small by bucketing clips of similar length.

Checkpoint key renaming (`load_s3d_checkpoint`), public name -> ours, after removing the
checkpoint's prefix (`module.` in `S3D_kinetics400.pt`, `backbone.` / `recognition_network.
visual_backbone.backbone.` etc. in the papers' WLASL / Sign2Gloss checkpoints):

    base.0.   -> block1.conv.           base.8.  .. base.12. -> block4.mixed_4b. .. block4.mixed_4f.
    base.2.   -> block2.conv1.          base.14. -> block5.mixed_5b.
    base.3.   -> block2.conv2.          base.15. -> block5.mixed_5c.
    base.5.   -> block3.mixed_3b.       fc.0.    -> classifier.
    base.6.   -> block3.mixed_3c.

(base.1, .4, .7, .13 are parameter-free max-pools.) Names inside a layer are unchanged:
`conv_s/bn_s/conv_t/bn_t` (separable conv), `conv/bn` (plain conv), `branchN.i` (mixed block).
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS, BN_MOMENTUM = 1e-3, 1e-3

# Mixed block branch widths at width 1.0: (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj).
MIXED = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
BLOCK_MIXED = {3: ("mixed_3b", "mixed_3c"), 4: ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"), 5: ("mixed_5b", "mixed_5c")}

# Public layer index (`base.N`) -> our module path.
PUBLIC_TO_OURS = {
    0: "block1.conv", 2: "block2.conv1", 3: "block2.conv2", 5: "block3.mixed_3b", 6: "block3.mixed_3c",
    8: "block4.mixed_4b", 9: "block4.mixed_4c", 10: "block4.mixed_4d", 11: "block4.mixed_4e", 12: "block4.mixed_4f",
    14: "block5.mixed_5b", 15: "block5.mixed_5c",
}


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def valid_lengths(lengths: torch.Tensor, t_in: int, t_out: int) -> torch.Tensor:
    """Valid output steps of each clip: floor(length * t_out / t_in), as the public code."""
    return torch.div(lengths.long() * t_out, t_in, rounding_mode="floor")


# CPU speed: PyTorch's 3-D convolutions and pools are far slower on CPU than the 2-D ones for
# these small tensors, so kx1x1 and 1x1x1 convs run as 2-D convs over a (B, C, T, H*W) view of
# the same memory (same weights, same result), and the stride-1 3x3x3 max-pool runs in the
# channels-last layout (~3x faster). Parameters keep their Conv3d shapes and names.


def temporal_conv(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """`conv` (kernel kx1x1, stride sx1x1) applied as a 2-D conv over (T, H*W)."""
    B, C, T, H, W = x.shape
    w = conv.weight
    y = F.conv2d(x.reshape(B, C, T, H * W), w.reshape(w.shape[0], w.shape[1], w.shape[2], 1), conv.bias,
                 (conv.stride[0], 1), (conv.padding[0], 0))
    return y.reshape(B, w.shape[0], y.shape[2], H, W)


class MaxPool3dChannelsLast(nn.MaxPool3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last_3d)).contiguous()


class BasicConv3d(nn.Module):
    """1x1x1 Conv3d (no bias) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel=1):
        super().__init__()
        if kernel != 1:
            raise ValueError("S3D's plain convs are 1x1x1")
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(temporal_conv(x, self.conv)))


class SepConv3d(nn.Module):
    """1xkxk spatial conv + BN + ReLU, then kx1x1 temporal conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv_s = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride), (0, padding, padding), bias=False)
        self.bn_s = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv_t = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False)
        self.bn_t = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_s(self.conv_s(x)))
        return F.relu(self.bn_t(temporal_conv(x, self.conv_t)))


class Mixed(nn.Module):
    """Inception block: four branches concatenated on channels."""

    def __init__(self, cin: int, c0: int, c1r: int, c1: int, c2r: int, c2: int, c3: int):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv3d(cin, c0, 1))
        self.branch1 = nn.Sequential(BasicConv3d(cin, c1r, 1), SepConv3d(c1r, c1, 3, 1, 1))
        self.branch2 = nn.Sequential(BasicConv3d(cin, c2r, 1), SepConv3d(c2r, c2, 3, 1, 1))
        self.branch3 = nn.Sequential(MaxPool3dChannelsLast(3, 1, 1), BasicConv3d(cin, c3, 1))
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class S3D(nn.Module):
    """S3D backbone with `num_blocks` (1..5) blocks; input (B, C, T, H, W) normalised to [-1, 1].

    `block_channels[i]` is the output width of block i+1. With `num_classes`, five blocks are
    required and `classify` gives clip logits.
    """

    def __init__(self, in_channels: int = 3, num_blocks: int = 4, width: float = 1.0, num_classes: int | None = None,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        if not 1 <= num_blocks <= 5:
            raise ValueError(f"S3D num_blocks must be 1..5, got {num_blocks}")
        if num_classes is not None and num_blocks != 5:
            raise ValueError("an S3D classifier needs num_blocks=5 (1024-d pooled features)")
        if width <= 0:
            raise ValueError(f"S3D width must be > 0, got {width}")
        self.in_channels, self.num_blocks, self.width = in_channels, num_blocks, width
        s = lambda c: scaled(c, width)  # noqa: E731
        self.block1 = nn.Sequential(OrderedDict(conv=SepConv3d(in_channels, s(64), 7, 2, 3)))
        self.block_channels = [s(64)]
        if num_blocks >= 2:
            self.block2 = nn.Sequential(OrderedDict(
                pool=nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                conv1=BasicConv3d(s(64), s(64), 1),
                conv2=SepConv3d(s(64), s(192), 3, 1, 1),
            ))
            self.block_channels.append(s(192))
        pools = {3: nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), 4: nn.MaxPool3d(3, 2, 1), 5: nn.MaxPool3d(2, 2, 0)}
        for b in range(3, num_blocks + 1):
            layers, cin = OrderedDict(pool=pools[b]), self.block_channels[-1]
            for name in BLOCK_MIXED[b]:
                layers[name] = Mixed(cin, *(s(c) for c in MIXED[name]))
                cin = layers[name].out_channels
            setattr(self, f"block{b}", nn.Sequential(layers))
            self.block_channels.append(cin)
        self.out_channels = self.block_channels[-1]
        self.classifier = nn.Conv3d(self.out_channels, num_classes, 1) if num_classes is not None else None
        # The public value (1e-3) suits fine-tuning pretrained statistics; from scratch the running
        # statistics would barely leave their initial values in a short run (use e.g. 0.1).
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.momentum = bn_momentum

    @property
    def blocks(self) -> list[nn.Sequential]:
        return [getattr(self, f"block{b}") for b in range(1, self.num_blocks + 1)]

    def forward_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, each (B, C_b, T_b, H_b, W_b)."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Spatially pooled last-block features (B, T', C) and valid output lengths (B,) or None."""
        t_in = x.shape[2]
        for block in self.blocks:
            x = block(x)
        feats = x.mean(dim=(3, 4)).transpose(1, 2)
        return feats, None if lengths is None else valid_lengths(lengths, t_in, feats.shape[1])

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Clip logits (B, num_classes): average over 2 frames x all pixels, 1x1 conv, mean over time."""
        if self.classifier is None:
            raise RuntimeError("this S3D has no classifier (build it with num_classes and num_blocks=5)")
        for block in self.blocks:
            x = block(x)
        x = F.avg_pool3d(x, (min(2, x.shape[2]), x.shape[3], x.shape[4]), stride=1)
        return self.classifier(x).flatten(2).mean(2)


def _unwrap(checkpoint) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: S3D checkpoint not found")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path}: holds more than tensors and plain containers, refusing to unpickle it; "
                             f"extract its state dict in a trusted session and pass that ({exc})") from None
    for key in ("model_state", "state_dict"):
        if isinstance(checkpoint, Mapping) and key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"not a state dict: {type(checkpoint).__name__}")
    return checkpoint


PUBLIC_KEY = re.compile(r"^(?P<prefix>.*?)(?P<name>base\.(?P<index>\d+)\.|fc\.0\.)(?P<rest>.+)$")


def rename_public_s3d_keys(state_dict: Mapping[str, torch.Tensor], prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Public S3D keys (`<prefix>base.N.*`, `<prefix>fc.0.*`) -> ours (see the module docstring).

    Keys outside `prefix` are ignored; with `prefix=None` the prefix is detected and must be
    unique (a two-stream checkpoint holds two S3Ds: pass e.g. `...rgb_stream.backbone.`).
    """
    found: dict[str, list[str]] = {}
    for key in state_dict:
        m = PUBLIC_KEY.match(key)
        if m:
            found.setdefault(m["prefix"], []).append(key)
    if prefix is None:
        if len(found) != 1:
            raise ValueError(f"cannot tell which S3D to load: key prefixes {sorted(found) or 'none'}; pass prefix=")
        prefix = next(iter(found))
    if prefix not in found:
        raise ValueError(f"no public S3D keys under prefix {prefix!r}; prefixes present: {sorted(found)}")
    out = {}
    for key in found[prefix]:
        m = PUBLIC_KEY.match(key)
        if m["name"].startswith("fc"):
            out["classifier." + m["rest"]] = state_dict[key]
            continue
        index = int(m["index"])
        if index not in PUBLIC_TO_OURS:
            raise ValueError(f"{key}: public S3D layer base.{index} has no parameters in S3D")
        out[f"{PUBLIC_TO_OURS[index]}.{m['rest']}"] = state_dict[key]
    return out


def load_s3d_checkpoint(model: S3D, checkpoint, prefix: str | None = None, exclude: Sequence[str] = ()) -> list[str]:
    """Load public-layout S3D weights (path or state dict) into `model` strictly; return dropped keys.

    Every parameter and buffer of `model` must come from the checkpoint with the same shape, except
    keys starting with an `exclude` prefix (e.g. `("block1.conv.conv_s.weight",)` for a keypoint
    stream whose first conv takes K heatmaps instead of RGB) and BatchNorm `num_batches_tracked`
    counters (absent from checkpoints saved before PyTorch 0.4.1; left at their value). The
    checkpoint's layers beyond the model (block 5 and the classifier in a four-block model) are
    dropped and returned; any other extra key is an error.
    """
    renamed = rename_public_s3d_keys(_unwrap(checkpoint), prefix)
    own = model.state_dict()
    excluded = lambda k: any(k.startswith(p) for p in exclude)  # noqa: E731
    beyond = [k for k in renamed if k not in own and (int(k[5]) > model.num_blocks if k.startswith("block") else k.startswith("classifier."))]
    unexpected = sorted(k for k in renamed if k not in own and k not in beyond)
    missing = sorted(k for k in own if k not in renamed and not excluded(k) and not k.endswith("num_batches_tracked"))
    wrong = sorted(f"{k}: checkpoint {tuple(renamed[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in own if k in renamed and not excluded(k) and renamed[k].shape != own[k].shape)
    if unexpected or missing or wrong:
        hint = f" (model width {model.width}; the public weights need width 1.0)" if wrong and model.width != 1.0 else ""
        raise ValueError("S3D checkpoint does not fit the model" + hint + ":"
                         + "".join(f"\n  unexpected: {k}" for k in unexpected[:20])
                         + "".join(f"\n  missing: {k}" for k in missing[:20])
                         + "".join(f"\n  shape: {w}" for w in wrong[:20]))
    load = {k: v for k, v in renamed.items() if k in own and not excluded(k)}
    result = model.load_state_dict(load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return sorted(beyond)
