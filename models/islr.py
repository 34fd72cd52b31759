"""Multilingual isolated-sign recognition (Wei & Chen, ICCV 2023): a shared visual encoder and one
classification layer per language.

    frames (B, T, 3, H, W) in [0, 1] [, keypoints (B, T, 133, 3)]
      -> encoder: "s3d"        S3D, five blocks (resize to rgb_size, x*2-1), mean over T, H, W -> (B, 1024*width)
                  "two_stream" TwoStream-SLR's streams and lateral connections (its CTC heads and
                               pyramids left out), each stream's last block averaged, keypoint
                               then RGB concatenated -> (B, 2 x 832*width)
      -> dropout -> {language: Linear -> (B, C_language)}   every head on every clip

Every head sees every clip (a later mapping step reads the primary head's softmax on auxiliary
clips; DDP sees every parameter used). `islr_loss` is the sum over languages of the
label-smoothed cross-entropy of that language's clips under its own head; `head_similarity` the
weight-level cross-lingual mapping scores of two heads.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.s3d import BN_MOMENTUM, S3D
from models.two_stream import TwoStreamConfig, TwoStreamSLR


class ISLRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_classes: dict[str, int]  # classes per language, in head order (the first: the primary language)
    encoder: Literal["s3d", "two_stream"] = "s3d"
    width: float = Field(1.0, gt=0)  # S3D channel multiplier (s3d encoder)
    rgb_size: int = Field(224, ge=16)  # s3d encoder input size
    bn_momentum: float = Field(BN_MOMENTUM, gt=0, le=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    # two_stream encoder: TwoStreamConfig fields (streams, width, rgb_size, keypoint_size, ...) except
    # num_classes; pyramid and fuse head are off (the encoder has no CTC heads)
    two_stream: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check(self) -> "ISLRConfig":
        if not self.num_classes or min(self.num_classes.values()) < 1:
            raise ValueError(f"num_classes needs at least one language with at least one class, got {self.num_classes}")
        if "num_classes" in self.two_stream:
            raise ValueError("two_stream.num_classes: leave it out (the encoder has no CTC heads)")
        self.two_stream_config()
        return self

    def two_stream_config(self) -> TwoStreamConfig:
        return TwoStreamConfig.model_validate({**self.two_stream, "num_classes": 2, "pyramid": False, "fuse_head": False})

    @property
    def languages(self) -> list[str]:
        return list(self.num_classes)

    @property
    def uses_keypoints(self) -> bool:
        return self.encoder == "two_stream" and "keypoint" in self.two_stream_config().streams


class ISLRModel(nn.Module):
    def __init__(self, config: ISLRConfig):
        super().__init__()
        self.config = c = config
        if c.encoder == "s3d":
            self.encoder = S3D(3, num_blocks=5, width=c.width, bn_momentum=c.bn_momentum)
            dim = self.encoder.out_channels
        else:
            self.encoder = TwoStreamSLR(c.two_stream_config())
            self.encoder.heads = nn.ModuleDict()  # the CTC heads of TwoStream-SLR have no use here
            dim = sum(self.encoder.backbones[s].out_channels for s in self.encoder.config.streams)
        self.dropout = nn.Dropout(c.dropout)
        self.heads = nn.ModuleDict({lang: nn.Linear(dim, n) for lang, n in c.num_classes.items()})

    def features(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled clip features (B, D) of frames (B, T, 3, H, W) in [0, 1] (and keypoints (B, T, 133, 3)
        in pixels of those frames for a keypoint stream)."""
        if self.config.encoder == "s3d":
            B, T, C, H, W = frames.shape
            size = self.config.rgb_size
            x = frames.reshape(B * T, C, H, W).float()
            if (H, W) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = (x * 2 - 1).reshape(B, T, C, size, size).transpose(1, 2)
            for block in self.encoder.blocks:
                x = block(x)
            return x.mean(dim=(2, 3, 4))
        feats, _ = self.encoder.encode(frames, keypoints)
        streams = sorted(feats, key=lambda s: s != "keypoint")  # keypoint first, as TwoStream-SLR's fuse head
        return torch.cat([feats[s][-1].mean(dim=(2, 3, 4)) for s in streams], dim=-1)

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of every language's head for every clip: {language: (B, C_language)}."""
        h = self.dropout(self.features(frames, keypoints))
        return {lang: head(h) for lang, head in self.heads.items()}


def islr_loss(logits: dict[str, torch.Tensor], language: torch.Tensor, targets: torch.Tensor,
              label_smoothing: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over languages of the mean label-smoothed cross-entropy of that language's clips.

    logits: {language: (B, C_l)} in head order; language (B,) each clip's head index; targets (B,)
    its class within that head. A language without clips in the batch adds 0 (through its logits,
    so every head stays in the graph). Returns the total and each language's term (floats)."""
    total, parts = 0.0, {}
    for k, (lang, lg) in enumerate(logits.items()):
        mine = language == k
        if bool(mine.any()):
            term = F.cross_entropy(lg[mine].float(), targets[mine], label_smoothing=label_smoothing)
        else:
            term = lg.sum() * 0.0
        total = total + term
        parts[lang] = float(term.detach())
    return total, parts


def load_encoder_from_sign2gloss(model: ISLRModel, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Start the encoder from a Sign2Gloss model's state dict (TwoStreamSLR): the s3d encoder takes
    the RGB stream's S3D blocks (blocks 1-4; block 5 keeps its initialisation), the two-stream encoder
    its streams and lateral connections. Returns the encoder keys copied; raises ValueError on a
    shape mismatch or when nothing fits."""
    own = model.encoder.state_dict()
    if model.config.encoder == "s3d":
        source = {k[len("backbones.rgb."):]: v for k, v in state_dict.items() if k.startswith("backbones.rgb.")}
    else:
        source = {k: v for k, v in state_dict.items() if k.startswith(("backbones.", "rgb_to_keypoint.", "keypoint_to_rgb."))}
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in source.items() if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError("the Sign2Gloss model's encoder does not fit (same width needed): " + "; ".join(wrong[:5]))
    copied = sorted(k for k in source if k in own)
    if not copied:
        raise ValueError(f"nothing of the Sign2Gloss model fits the {model.config.encoder} encoder")
    model.encoder.load_state_dict({k: source[k] for k in copied}, strict=False)
    return copied



def head_similarity(model: ISLRModel, auxiliary: str, primary: str) -> torch.Tensor:
    """The weight-level cross-lingual scores: row softmax of W_aux W_primaryᵀ, the two heads' weight
    matrices (C_aux, D) and (C_primary, D), biases left out -> (C_aux, C_primary) float32, row i the
    scores of auxiliary class i over the primary classes."""
    for lang in (auxiliary, primary):
        if lang not in model.heads:
            raise KeyError(f"the ISLR model has no head for language {lang!r} (heads: {list(model.heads)})")
    w_aux, w_primary = model.heads[auxiliary].weight.float(), model.heads[primary].weight.float()
    return torch.softmax(w_aux @ w_primary.T, dim=1)
