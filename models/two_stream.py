"""TwoStream-SLR (Chen et al., NeurIPS 2022), the CSLR model of the cross-lingual paper.

    frames (B, T, 3, H, W) in [0, 1]  -> resize to rgb_size, x*2-1 -> S3D (RGB)      --.
                                                                     lateral 1..3 | |  |
    keypoints (B, T, 133, 3)   -> Gaussian heatmaps at keypoint_size -> S3D (K ch) --'
    each stream: top-down sign pyramid over its last `pyramid_levels` blocks; auxiliary heads on
    the levels below the top; main head on the top level (T/4 x 832 at full width); fuse head on
    the concatenated top levels (keypoint first, 1664-d); ensemble = mean of the main heads'
    probabilities.

Lateral connections after blocks 1..`lateral_blocks`, both computed from the blocks' outputs and
added: RGB -> keypoint is a Conv3d strided by rgb_size / keypoint_size in space, keypoint -> RGB
the matching ConvTranspose3d; Kaiming-initialised, or zero (`lateral_init="zero"`: the streams start
independent and the laterals grow from their gradients, which trains faster from scratch on the demo
corpus, docs/PERFORMANCE.md). Pyramid upsampling (public "v1"): separable ConvTranspose3d
(1x3x3, stride 2 in space; then 3x1x1, stride 2 in time where the lower level is twice as long),
each + BatchNorm + ReLU, added to the lower level.

Loss (`loss`): CTC(rgb) + w_rgb * sum CTC(rgb aux) + CTC(kp) + w_kp * sum CTC(kp aux) + CTC(fuse)
+ w_kl * sum_{head} KL(ensemble || head), teacher detached; CTC sums over samples / B as the
public code, infeasible samples (label longer than its output allows) are excluded and counted.
Differences from the public code, on purpose: the KL is summed over valid steps only (the public
`batchmean` also counts padded steps); intermediate levels are spatially averaged (the public
code also averages pairs of neighbouring steps there, shortening them by one step).

`streams=("rgb",)` is SingleStream-SLR, `("keypoint",)` the keypoint-only model; lateral, fuse,
ensemble and KL exist only with both streams. All outputs are batch-major (B, T', .).

Inputs: frames RGB in [0, 1] of any size (resized here, bilinear with antialiasing, to rgb_size
square; so do not normalise them in the data pipeline), keypoints in pixels of those frames
(pixel centres at integer coordinates). Pretrained S3D weights load into `model.backbones["rgb"]`
/ `["keypoint"]` with `models.s3d.load_s3d_checkpoint` (the keypoint stream's first conv takes K
heatmaps: exclude `block1.conv.conv_s.weight` when loading RGB weights into it).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.ctc import ctc_loss
from models.heatmaps import PUBLIC_79, keypoint_indices, render_heatmaps
from models.s3d import BN_EPS, BN_MOMENTUM, S3D, valid_lengths
from models.visual_head import VisualHead, length_mask

Stream = Literal["rgb", "keypoint"]


class TwoStreamConfig(BaseModel):
    """Sizes and switches. Defaults are the papers' (GPU) sizes; CPU configs shrink width and sizes."""

    model_config = ConfigDict(extra="forbid")

    num_classes: int = Field(ge=2, description="gloss vocabulary size incl. blank=0, pad=1, unk=2")
    streams: tuple[Stream, ...] = ("rgb", "keypoint")
    width: float = Field(1.0, gt=0, description="S3D channel multiplier (1.0 loads public weights)")
    bn_momentum: float = Field(1e-3, gt=0, le=1, description="S3D BatchNorm momentum: 1e-3 as the public S3D (pretrained); ~0.1 from scratch")
    num_blocks: int = Field(4, ge=2, le=5)
    rgb_size: int = Field(224, ge=16)
    keypoint_size: int = Field(112, ge=8)
    keypoint_parts: tuple[str, ...] = PUBLIC_79
    heatmap_sigma: float | tuple[float, float] = Field(
        4.0, description="Gaussian sigma in heatmap pixels, one or (x, y); with heatmap_sigma_follows_crop, at the evaluation view")
    heatmap_sigma_follows_crop: bool = Field(
        False, description="training clips' Gaussians widen/narrow with their crop (forward's crop_zoom) as the public "
                           "code's, drawn on the frame before cropping: sigma x crop_zoom; evaluation uses sigma")
    heatmap_threshold: float = 0.0
    channel_order: Literal["rgb", "bgr"] = "rgb"
    lateral: bool = True
    lateral_blocks: int = Field(3, ge=1)
    lateral_kernel: tuple[int, int, int] = (7, 3, 3)
    lateral_init: Literal["kaiming", "zero"] = Field("kaiming", description="zero: the streams start independent")
    pyramid: bool = True
    pyramid_levels: int = Field(3, ge=2)
    head_hidden: int = 512
    head_ff: int = 2048
    head_kernel: int = 3
    dropout: float = 0.1
    fuse_head: bool = True
    aux_weight_rgb: float = 0.2
    aux_weight_keypoint: float = 0.5
    distill_weight: float = 1.0
    gloss_feature_head: Literal["rgb", "keypoint", "fuse"] | None = None
    freeze_rgb_blocks: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "TwoStreamConfig":
        if not self.streams or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"streams must be a non-empty subset of rgb, keypoint; got {self.streams}")
        if len(self.streams) == 2 and self.rgb_size % self.keypoint_size:
            raise ValueError(f"rgb_size {self.rgb_size} must be a multiple of keypoint_size {self.keypoint_size}")
        if self.lateral_blocks >= self.num_blocks:
            raise ValueError("lateral_blocks must be < num_blocks (no lateral after the last block)")
        if self.pyramid and self.pyramid_levels > self.num_blocks:
            raise ValueError("pyramid_levels must be <= num_blocks")
        keypoint_indices(self.keypoint_parts)
        if min(self.heatmap_sigma if isinstance(self.heatmap_sigma, tuple) else (self.heatmap_sigma,)) <= 0:
            raise ValueError(f"heatmap_sigma must be > 0, got {self.heatmap_sigma}")
        if self.gloss_feature_head is not None and self.gloss_feature_head not in self.head_names:
            raise ValueError(f"gloss_feature_head {self.gloss_feature_head!r} is not one of {self.head_names}")
        return self

    @property
    def two_stream(self) -> bool:
        return len(self.streams) == 2

    @property
    def head_names(self) -> list[str]:
        return [*self.streams, *(["fuse"] if self.two_stream and self.fuse_head else [])]

    @property
    def temporal_stride(self) -> int:
        """Input frames per output step: S3D halves time in blocks 1, 4 and 5. A clip of at least
        this many frames gets an output step in any batch (`s3d.valid_lengths`)."""
        return 2 if self.num_blocks < 4 else 4 if self.num_blocks == 4 else 8

    @property
    def decodable_heads(self) -> list[str]:
        """The heads, plus `ensemble` (their averaged probabilities) when there are several."""
        heads = self.head_names
        return heads + (["ensemble"] if len(heads) > 1 else [])


def _fit(x: torch.Tensor, size) -> torch.Tensor:
    """Crop or zero-pad the trailing (T, H, W) of x to `size`."""
    pad = []
    for have, want in zip(reversed(x.shape[2:]), reversed(tuple(size))):
        pad += [0, want - have]
    return F.pad(x, pad) if any(pad) else x


class ConvTranspose3dTo(nn.ConvTranspose3d):
    """ConvTranspose3d whose output is made exactly `size` (output padding, then crop/pad)."""

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        base = [(i - 1) * s - 2 * p + k for i, s, p, k in zip(x.shape[2:], self.stride, self.padding, self.kernel_size)]
        out_pad = [min(max(want - b, 0), s - 1) for want, b, s in zip(size, base, self.stride)]
        y = F.conv_transpose3d(x, self.weight, self.bias, self.stride, self.padding, out_pad)
        return _fit(y, size)


class PyramidUpsample(nn.Module):
    """Upper level (C_hi) -> lower level's size and width (C_lo): separable transposed conv + BN + ReLU."""

    def __init__(self, c_hi: int, c_lo: int, temporal_stride: int):
        super().__init__()
        self.conv_s = ConvTranspose3dTo(c_hi, c_lo, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.bn_s = nn.BatchNorm3d(c_lo, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv_t = ConvTranspose3dTo(c_lo, c_lo, (3, 1, 1), (temporal_stride, 1, 1), (1, 0, 0), bias=False)
        self.bn_t = nn.BatchNorm3d(c_lo, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        T, H, W = size
        x = F.relu(self.bn_s(self.conv_s(x, (x.shape[2], H, W))))
        return F.relu(self.bn_t(self.conv_t(x, (T, H, W))))


class TwoStreamSLR(nn.Module):
    def __init__(self, config: TwoStreamConfig):
        super().__init__()
        self.config = c = config
        self.kp_indices = keypoint_indices(c.keypoint_parts)
        in_channels = {"rgb": 3, "keypoint": len(self.kp_indices)}
        self.backbones = nn.ModuleDict({s: S3D(in_channels[s], c.num_blocks, c.width, bn_momentum=c.bn_momentum) for s in c.streams})
        channels = next(iter(self.backbones.values())).block_channels
        top = channels[-1]

        if c.two_stream and c.lateral:
            ratio = c.rgb_size // c.keypoint_size
            kt, kh, kw = c.lateral_kernel
            pad = (kt // 2, kh // 2, kw // 2)
            self.rgb_to_keypoint = nn.ModuleList(
                nn.Conv3d(ch, ch, c.lateral_kernel, (1, ratio, ratio), pad, bias=False) for ch in channels[: c.lateral_blocks])
            self.keypoint_to_rgb = nn.ModuleList(
                ConvTranspose3dTo(ch, ch, c.lateral_kernel, (1, ratio, ratio), pad, bias=False) for ch in channels[: c.lateral_blocks])
            init = nn.init.kaiming_normal_ if c.lateral_init == "kaiming" else nn.init.zeros_
            for conv in [*self.rgb_to_keypoint, *self.keypoint_to_rgb]:
                init(conv.weight)

        # Pyramid levels: the last `levels` blocks; the main head reads the top one.
        self.levels = c.pyramid_levels if c.pyramid else 1
        level_blocks = list(range(c.num_blocks - self.levels + 1, c.num_blocks + 1))  # 1-based block numbers
        if c.pyramid:
            # Blocks 4 and 5 halve time (T/2 -> T/4 -> T/8); the others keep it.
            self.pyramids = nn.ModuleDict({s: nn.ModuleList(
                PyramidUpsample(channels[b - 1], channels[b - 2], 2 if b >= 4 else 1) for b in level_blocks[:0:-1])
                for s in c.streams})

        head = lambda cin: VisualHead(cin, c.num_classes, c.head_hidden, c.head_ff, c.head_kernel, c.dropout)  # noqa: E731
        self.heads = nn.ModuleDict({s: head(top) for s in c.streams})
        if c.two_stream and c.fuse_head:
            self.heads["fuse"] = head(2 * top)
        if c.pyramid:
            self.aux_heads = nn.ModuleDict({s: nn.ModuleList(head(channels[b - 1]) for b in level_blocks[:-1]) for s in c.streams})

        self.gloss_feature_head = c.gloss_feature_head or ("fuse" if "fuse" in self.heads else c.streams[0])
        self.decode_head = "ensemble" if len(self.heads) > 1 else c.streams[0]
        if c.freeze_rgb_blocks and "rgb" in self.backbones:
            for block in self.backbones["rgb"].blocks[: c.freeze_rgb_blocks]:
                block.requires_grad_(False)

    def train(self, mode: bool = True) -> "TwoStreamSLR":
        super().train(mode)
        if self.config.freeze_rgb_blocks and "rgb" in self.backbones:
            for block in self.backbones["rgb"].blocks[: self.config.freeze_rgb_blocks]:
                block.eval()  # frozen blocks keep their BatchNorm statistics
        return self

    def _inputs(self, frames, keypoints, frame_size, crop_zoom=None) -> dict[str, torch.Tensor]:
        c, x = self.config, {}
        if "rgb" in c.streams:
            if frames is None:
                raise ValueError("the RGB stream needs frames (B, T, 3, H, W)")
            B, T, C, H, W = frames.shape
            v = frames.reshape(B * T, C, H, W).float()
            if (H, W) != (c.rgb_size, c.rgb_size):
                v = F.interpolate(v, size=(c.rgb_size, c.rgb_size), mode="bilinear", antialias=True, align_corners=False)
            if c.channel_order == "bgr":
                v = v.flip(1)
            x["rgb"] = (v * 2 - 1).reshape(B, T, C, c.rgb_size, c.rgb_size).transpose(1, 2)
        if "keypoint" in c.streams:
            if keypoints is None:
                raise ValueError("the keypoint stream needs keypoints (B, T, 133, 3)")
            if frame_size is None:
                if frames is None:
                    raise ValueError("keypoints are in frame pixels: pass frames or frame_size=(H, W)")
                frame_size = tuple(frames.shape[-2:])
            sigma = c.heatmap_sigma
            if c.heatmap_sigma_follows_crop and crop_zoom is not None:
                zoom = crop_zoom.to(keypoints.device).float()  # (B, 2): per clip, per axis
                sigma = torch.as_tensor(sigma, dtype=torch.float32, device=keypoints.device) * zoom
            with torch.no_grad():
                x["keypoint"] = render_heatmaps(keypoints, frame_size, (c.keypoint_size, c.keypoint_size), sigma,
                                                self.kp_indices, c.heatmap_threshold, signed=True)
        return x

    def encode(self, frames: torch.Tensor | None, keypoints: torch.Tensor | None = None, frame_size: tuple[int, int] | None = None,
               crop_zoom: torch.Tensor | None = None) -> tuple[dict[str, list[torch.Tensor]], int]:
        """The streams with their lateral connections: every block's output per stream, each
        (B, C_b, T_b, H_b, W_b), and the input length T (the heads and pyramids read these)."""
        c = self.config
        x = self._inputs(frames, keypoints, frame_size, crop_zoom)
        T_in = next(iter(x.values())).shape[2]
        feats = {s: [] for s in c.streams}
        for b in range(c.num_blocks):
            for s in c.streams:
                x[s] = self.backbones[s].blocks[b](x[s])
            if c.two_stream and c.lateral and b < c.lateral_blocks:
                r, k = x["rgb"], x["keypoint"]
                x["rgb"] = r + self.keypoint_to_rgb[b](k, r.shape[2:])
                x["keypoint"] = k + _fit(self.rgb_to_keypoint[b](r), k.shape[2:])
            for s in c.streams:
                feats[s].append(x[s])
        return feats, T_in

    def forward(self, frames: torch.Tensor | None, frame_lengths: torch.Tensor, keypoints: torch.Tensor | None = None,
                frame_size: tuple[int, int] | None = None, crop_zoom: torch.Tensor | None = None) -> dict:
        """Run the configured streams. `crop_zoom` (B, 2): each training clip's crop zoom (x, y) relative
        to the evaluation view (VideoCollate's batch), used with `heatmap_sigma_follows_crop`. Returns
        (all batch-major):

        log_probs / logits: {head: (B, T', V)} for heads rgb / keypoint / fuse present and
          `ensemble` (log of the mean of the main heads' probabilities) when there are >= 2;
        lengths: (B,) valid steps of those heads (T' = T/4 with four blocks);
        aux_log_probs: {stream: [(B, T_l, V), ...]} pyramid levels bottom-up; aux_lengths likewise;
        stream_features: {stream: (B, T', C)} each stream's pooled top level (`backbone`);
        gloss_features: (B, T', head_hidden) of head `gloss_feature_head` (the V-L mapper's input);
        backbone_features: (B, T', C or 2C) the input of that head;
        decode_head: the head to decode (`ensemble`, or the only stream).
        """
        out = self.backbone(frames, frame_lengths, keypoints, frame_size, crop_zoom)
        return {**out, **self.head_outputs(out["stream_features"], out["lengths"])}

    def backbone(self, frames: torch.Tensor | None, frame_lengths: torch.Tensor, keypoints: torch.Tensor | None = None,
                 frame_size: tuple[int, int] | None = None, crop_zoom: torch.Tensor | None = None) -> dict:
        """Everything before the main heads: the S3D streams, lateral connections, sign pyramids and
        their auxiliary heads. Returns `stream_features` {stream: (B, T', C)}, `lengths` (B,),
        `aux_log_probs`, `aux_lengths` (see `forward`)."""
        c = self.config
        feats, T_in = self.encode(frames, keypoints, frame_size, crop_zoom)
        frame_lengths = frame_lengths.to(feats[c.streams[0]][0].device)
        out = {"stream_features": {}, "aux_log_probs": {}, "aux_lengths": {}}
        for s in c.streams:
            levels = feats[s][-self.levels:]
            if c.pyramid:
                for i, up in zip(range(self.levels - 1, 0, -1), self.pyramids[s]):
                    levels[i - 1] = levels[i - 1] + up(levels[i], levels[i - 1].shape[2:])
            pooled = [lv.mean(dim=(3, 4)).transpose(1, 2) for lv in levels]  # (B, T_l, C_l)
            lengths = [valid_lengths(frame_lengths, T_in, p.shape[1]) for p in pooled]
            out["stream_features"][s] = pooled[-1]
            out["lengths"] = lengths[-1]
            if c.pyramid:
                aux = [h(p, n) for h, p, n in zip(self.aux_heads[s], pooled[:-1], lengths[:-1])]
                out["aux_log_probs"][s] = [a["log_probs"] for a in aux]
                out["aux_lengths"][s] = lengths[:-1]
        return out

    def head_outputs(self, stream_features: dict[str, torch.Tensor], lengths: torch.Tensor) -> dict:
        """The main heads on the streams' top features {stream: (B, T', C)}: `log_probs`, `logits`,
        `gloss_features`, `backbone_features`, `decode_head` (see `forward`)."""
        out = {"log_probs": {}, "logits": {}, "decode_head": self.decode_head}
        inputs = dict(stream_features)
        if "fuse" in self.heads:
            inputs["fuse"] = torch.cat([stream_features["keypoint"], stream_features["rgb"]], dim=-1)
        for name, head in self.heads.items():
            h = head(inputs[name], lengths)
            out["log_probs"][name], out["logits"][name] = h["log_probs"], h["logits"]
            if name == self.gloss_feature_head:
                out["gloss_features"], out["backbone_features"] = h["features"], inputs[name]
        if len(self.heads) > 1:
            stacked = torch.stack(list(out["log_probs"].values()))
            out["log_probs"]["ensemble"] = torch.logsumexp(stacked, 0) - math.log(len(self.heads))
        return out

    def loss(self, outputs: dict, labels: torch.Tensor, label_lengths: torch.Tensor,
             distill_weight: float | None = None) -> tuple[torch.Tensor, dict]:
        """Total training loss and its parts (detached floats, plus `infeasible`: samples whose
        labels cannot fit the main heads' output length; they are left out of every CTC term).
        `distill_weight` replaces `config.distill_weight` (the trainer's KL warm-up)."""
        c = self.config
        w_kl = c.distill_weight if distill_weight is None else distill_weight
        parts, total = {}, 0.0
        lengths = outputs["lengths"]
        weights = {"rgb": c.aux_weight_rgb, "keypoint": c.aux_weight_keypoint}
        infeasible = None
        for name in self.heads:
            res = ctc_loss(outputs["log_probs"][name], lengths, labels, label_lengths)
            infeasible = res.infeasible
            total = total + res.loss
            parts[f"ctc_{name}"] = res.loss.detach()
            if name in outputs["aux_log_probs"]:
                aux = sum(ctc_loss(lp, n, labels, label_lengths).loss
                          for lp, n in zip(outputs["aux_log_probs"][name], outputs["aux_lengths"][name]))
                total = total + weights[name] * aux
                parts[f"ctc_{name}_aux"] = aux.detach()
        if "ensemble" in outputs["log_probs"] and w_kl:
            teacher_lp = outputs["log_probs"]["ensemble"].detach()
            mask = length_mask(lengths, teacher_lp.shape[1]).to(teacher_lp.dtype)
            kl = 0.0
            for name in self.heads:
                per_step = (teacher_lp.exp() * (teacher_lp - outputs["log_probs"][name])).sum(-1)
                kl = kl + (per_step * mask).sum() / teacher_lp.shape[0]
            total = total + w_kl * kl
            parts["kl"] = kl.detach()
        parts["infeasible"] = int(infeasible.sum())
        parts["total"] = total.detach()
        return total, parts


STREAM_PARTS = ("backbones", "heads", "pyramids", "aux_heads")  # TwoStreamSLR's per-stream modules
# TwoStreamSLR's modules that `backbone` runs (everything but the main heads)
BACKBONE_PARTS = ("backbones", "rgb_to_keypoint", "keypoint_to_rgb", "pyramids", "aux_heads")


def copy_stream(model: TwoStreamSLR, theirs: dict[str, torch.Tensor], stream: str,
                parts: tuple[str, ...] | None = None) -> list[str]:
    """Copy one stream (`rgb` or `keypoint`) of another model's state dict `theirs` into `model`:
    its S3D (`backbones.<stream>.*`) and head (`heads.<stream>.*`) must be there with the model's
    shapes; its sign pyramid and auxiliary heads are copied when `theirs` has them too. `parts`
    (of STREAM_PARTS; None: all) limits the copy, e.g. ("backbones",) for the S3D alone. Returns
    the parts copied; raises ValueError listing missing/unexpected keys and shape mismatches."""
    if stream not in model.backbones:
        raise ValueError(f"the model has no {stream} stream")
    unknown = sorted(set(parts or ()) - set(STREAM_PARTS))
    if unknown:
        raise ValueError(f"unknown stream parts {unknown}; known: {list(STREAM_PARTS)}")
    own = model.state_dict()
    copied, update = [], {}
    for part in parts or STREAM_PARTS:
        prefix = f"{part}.{stream}."
        wanted = [k for k in own if k.startswith(prefix)]
        present = [k for k in wanted if k in theirs]
        if not wanted or (not present and part in ("pyramids", "aux_heads")):
            continue
        missing = sorted(set(wanted) - set(present)) + sorted(k for k in theirs if k.startswith(prefix) and k not in own)
        wrong = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in present if theirs[k].shape != own[k].shape]
        if missing or wrong:
            raise ValueError(f"its {part}.{stream} does not fit the model (same sizes needed):"
                             + "".join(f"\n  missing/unexpected: {k}" for k in missing[:10])
                             + "".join(f"\n  shape: {w}" for w in wrong[:10]))
        update.update({k: theirs[k] for k in wanted})
        copied.append(part)
    model.load_state_dict(update, strict=False)
    return copied
