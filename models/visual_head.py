"""Visual head: backbone features (B, T, C) -> gloss representations (B, T, 512) and gloss logits.

    Linear(C -> 512) -> BatchNorm over valid steps -> ReLU -> + positional encoding -> dropout
    -> residual temporal-conv block (LayerNorm, Conv1d k3 512->2048, ReLU, dropout,
       Conv1d k3 2048->512, dropout, + input) -> LayerNorm -> Linear(512 -> V)

as in the papers' code (512 / 2048 / kernel 3 / dropout 0.1 there; all configurable here so the
CPU defaults can be small). The 512-d output of the final LayerNorm is the "gloss
representation" that the V-L mapper consumes.

Padding: the BatchNorm computes its training statistics over valid time steps only, and padded
steps are zeroed before every temporal conv, so a clip's outputs on its valid steps do not
depend on how much padding its batch has (in eval mode; in training the batch statistics do, as
for any BatchNorm). For multi-GPU training `nn.SyncBatchNorm.convert_sync_batchnorm` converts the
inner BatchNorm1d; it only ever sees (N_valid, C) inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool, True on the first lengths[b] steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over the channel axis of (B, T, C) using only the steps where mask is True."""

    def __init__(self, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.bn(x[mask])  # (N_valid, C); its dtype may differ from x's under autocast
        out = torch.zeros(*x.shape[:-1], y.shape[-1], dtype=y.dtype, device=x.device)
        out[mask] = y
        return out


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The Transformer's sin/cos positional encoding, (length, dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class TemporalConvBlock(nn.Module):
    """x + Dropout(Conv1d(Dropout(ReLU(Conv1d(LayerNorm(x)))))), kernel k, padding k//2."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.conv1 = nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(hidden, dim, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)  # B, 1, T
        h = self.norm(x).transpose(1, 2) * m
        h = self.dropout(torch.relu(self.conv1(h))) * m
        h = self.dropout(self.conv2(h))
        return x + h.transpose(1, 2)


class VisualHead(nn.Module):
    """(B, T, input_size) features + valid lengths -> dict of (B, T, .) tensors, batch-major:

    `features` (gloss representations, hidden_size), `logits`, `log_probs`, `probs` (num_classes,
    the last two in float32). Values on padded steps are meaningless.
    """

    def __init__(self, input_size: int, num_classes: int, hidden_size: int = 512, ff_size: int = 2048,
                 kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(input_size, hidden_size)
        self.norm1 = MaskedBatchNorm1d(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.temporal = TemporalConvBlock(hidden_size, ff_size, kernel_size, dropout)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        B, T, _ = x.shape
        mask = length_mask(lengths, T)
        x = torch.relu(self.norm1(self.proj(x), mask))
        x = self.dropout(x + sinusoidal_positions(T, x.shape[-1], x.device, x.dtype))
        x = self.norm2(self.temporal(x, mask))
        logits = self.classifier(x)
        log_probs = logits.float().log_softmax(-1)  # float32 even under bf16 autocast (CTC, KL)
        return {"features": x, "logits": logits, "log_probs": log_probs, "probs": log_probs.exp()}
