"""`groundtruth` back-end: the synthetic corpus' saved keypoints, optionally degraded as an
estimator delivers them (`noise`), moved like the stored frames."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from pipelines.keypoints.base import NUM_KEYPOINTS, GroundTruthConfig, VideoFrames
from pipelines.keypoints.estimator_noise import apply_estimator_noise
from pipelines.video_io import read_bytes, resolve_fs


def load_keypoint_file(path: str) -> np.ndarray:
    """float32 (T, 133, 3) from a local path or URI; raises naming the file when malformed."""
    fs, p = resolve_fs(path)
    try:
        blob = read_bytes(fs, p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: keypoint file not found") from None
    try:
        kp = np.load(io.BytesIO(blob), allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a .npy array ({exc})") from None
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{path}: keypoints of shape {kp.shape}, expected (T, {NUM_KEYPOINTS}, 3)")
    return kp.astype(np.float32, copy=False)


class GroundTruthKeypoints:
    name = "groundtruth"

    def __init__(self, config: GroundTruthConfig):
        self.config = config

    def estimate(self, videos: Sequence[VideoFrames]) -> list[np.ndarray]:
        out = []
        for v in videos:
            kp = load_keypoint_file(v.keypoints_path)
            if len(v.indices) and int(v.indices.max()) >= len(kp):
                raise ValueError(f"{v.keypoints_path}: {len(kp)} frames of keypoints, the video has at least {int(v.indices.max()) + 1}")
            if self.config.noise is not None:
                kp = apply_estimator_noise(kp, self.config.noise, v.name)
            kp = kp[v.indices].copy()
            present = kp[..., 2] > 0
            kp[..., :2] = v.geometry.apply(kp[..., :2])
            kp[~present] = 0.0
            out.append(kp)
        return out
