"""Keypoints -> Gaussian heatmaps, the input of the keypoint stream.

COCO-WholeBody has 133 points: body 0-16, feet 17-22, face 23-90, left hand 91-111, right hand
112-132. The papers' code keeps 79 of them, concatenating its parts in sorted name order:
16 face points (every third of 23-70), 42 hand points, 10 mouth points (every second of 71-90)
and 11 upper-body points (0-10). `PUBLIC_79` reproduces that order, which matters for loading
their keypoint-stream checkpoints (the first conv's input channels).

Maps are rendered directly at the stream's input size (h, w) - never at frame size and then
downscaled, which is what exhausts GPU memory in the public code - as an outer product of two
1-D Gaussians, so the cost is O(B*K*T*(h + w)) exp() calls plus one broadcast multiply.
"""

from __future__ import annotations

from typing import Sequence

import torch

NUM_WHOLEBODY = 133
PARTS: dict[str, list[int]] = {
    "pose": list(range(0, 11)),
    "hand": list(range(91, 133)),
    "mouth": list(range(71, 91)),
    "face_others": list(range(23, 71)),
}
for _part in ("mouth", "face_others", "hand"):
    PARTS[f"{_part}_half"] = PARTS[_part][::2]
    PARTS[f"{_part}_1_3"] = PARTS[_part][::3]

PUBLIC_79 = ("face_others_1_3", "hand", "mouth_half", "pose")


def keypoint_indices(parts: Sequence[str] = PUBLIC_79) -> list[int]:
    """COCO-WholeBody indices of the named parts, concatenated in the order given."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown keypoint parts {unknown}; known: {sorted(PARTS)}")
    return [i for p in parts for i in PARTS[p]]


def render_heatmaps(
    keypoints: torch.Tensor,
    frame_size: tuple[int, int],
    map_size: tuple[int, int],
    sigma: float | Sequence[float] | torch.Tensor,
    indices: Sequence[int] | None = None,
    threshold: float = 0.0,
    signed: bool = False,
) -> torch.Tensor:
    """Gaussian heatmaps (B, K, T, h, w) in [0, 1] from keypoints (B, T, N, 3).

    keypoints[..., 0:2] are x, y in pixels of the (H, W) = `frame_size` frame (pixel centres at
    integer coordinates), keypoints[..., 2] the detector score. Each selected point (`indices`,
    default all N) becomes exp(-dx^2 / (2 sx^2) - dy^2 / (2 sy^2)) with d in map pixels and `sigma`
    in map pixels: one value, a pair (sx, sy), or a tensor (B, 2) of one pair per clip (widths that
    follow each clip's crop); points whose score is not above `threshold` give an all-zero map
    (undetected points are often reported at (0, 0) with score 0: they must not light up a corner).
    `signed=True` returns 2 * map - 1 in [-1, 1], the S3D input range, in the same pass.
    """
    if keypoints.ndim != 4 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be (B, T, N, 3), got {tuple(keypoints.shape)}")
    if isinstance(sigma, (int, float)):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        den_x = den_y = 2 * sigma**2
    else:
        B = keypoints.shape[0]
        s = torch.as_tensor(sigma, dtype=torch.float32, device=keypoints.device)
        if s.shape not in ((2,), (B, 2)):
            raise ValueError(f"sigma must be one value, a pair (x, y) or a (B, 2) tensor, got shape {tuple(s.shape)}")
        if not bool((s > 0).all()):
            raise ValueError(f"sigma must be > 0, got {sigma}")
        den = 2 * s.reshape(-1, 2, 1, 1, 1) ** 2  # (1 or B, 2, 1, 1, 1): broadcast over K, T and the map axis
        den_x, den_y = den[:, 0], den[:, 1]
    if indices is not None:
        keypoints = keypoints[:, :, list(indices)]
    (H, W), (h, w) = frame_size, map_size
    kp = keypoints.float().permute(0, 2, 1, 3).contiguous()  # B, K, T, 3 (contiguous: so is the output)
    x = (kp[..., 0] + 0.5) * (w / W) - 0.5
    y = (kp[..., 1] + 0.5) * (h / H) - 0.5
    keep = (kp[..., 2] > threshold).to(kp.dtype)
    grid_x = torch.arange(w, device=kp.device, dtype=kp.dtype)
    grid_y = torch.arange(h, device=kp.device, dtype=kp.dtype)
    gx = torch.exp(-((grid_x - x[..., None]) ** 2) / den_x)  # B, K, T, w
    gy = torch.exp(-((grid_y - y[..., None]) ** 2) / den_y) * keep[..., None]  # B, K, T, h
    if signed:
        return torch.addcmul(torch.tensor(-1.0, device=kp.device), gy[..., :, None], gx[..., None, :], value=2.0)
    return gy[..., :, None] * gx[..., None, :]
