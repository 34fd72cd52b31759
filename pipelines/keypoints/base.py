"""The keypoint back-end protocol, its config, and the Ray Data stage that runs a back-end.

Every back-end returns float32 (T, 133, 3) per video in the COCO-WholeBody layout: x, y in stored
frame pixels (pixel-index units: (0, 0) is the centre of the top-left pixel) and a score in
[0, 1]; score 0 means "absent" (and then x = y = 0).

`KeypointStage` is a callable class for `Dataset.map_batches(..., compute=ActorPoolStrategy(...))`:
`__init__` loads the model once per actor, `__call__` adds a `keypoints` column to a batch of
decoded videos. A video the back-end fails on becomes an error row, never a crash.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

import numpy as np

from common.config import StrictModel
from pipelines.keypoints.estimator_noise import EstimatorNoiseConfig
from pipelines.video_io import Geometry

log = logging.getLogger(__name__)

NUM_KEYPOINTS = 133
BODY = slice(0, 17)  # COCO order: nose, eyes (l, r), ears (l, r), shoulders, elbows, wrists, hips, knees, ankles
FEET = slice(17, 23)  # left big toe, left small toe, left heel, right big toe, right small toe, right heel
FACE = slice(23, 91)  # 68 points, iBUG 300-W order
LEFT_HAND = slice(91, 112)  # 21 points: wrist, thumb 1-4, index 1-4, middle, ring, little
RIGHT_HAND = slice(112, 133)
NOSE = 0

Backend = Literal["none", "groundtruth", "mediapipe", "hrnet"]


class HRNetConfig(StrictModel):
    """mmpose top-down HRNet on COCO-WholeBody.

    config: an mmpose config file; relative names are looked up among the configs mmpose ships
        (`configs/wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/<config>`).
    checkpoint: local weights file; None builds the network with random weights (tests only).
    detector_config / detector_checkpoint: an mmdet person detector; None uses the whole frame
        as the person box (one signer, framed by the camera, as in PHOENIX and CSL-Daily).
    device: "auto" picks CUDA when the actor has a GPU.
    num_threads: torch CPU threads in this process. On a busy machine more threads than free cores
        make CPU inference many times slower (measured: 2.4 s vs 90 s for 4 frames at load 7).
    """

    config: str = "td-hm_hrnet-w48_dark-8xb32-210e_coco-wholebody-384x288.py"
    checkpoint: str | None = None
    detector_config: str | None = None
    detector_checkpoint: str | None = None
    detector_score: float = 0.3
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = None  # torch CPU threads; None: torch's default (Ray sets it to the actor's CPUs)


class MediaPipeConfig(StrictModel):
    """MediaPipe Holistic (0.10.14; its models ship in the wheel). model_complexity must stay 1:
    0 and 2 download their models at run time. The graph is reset before every video."""

    model_complexity: Literal[1] = 1
    static_image_mode: bool = False
    smooth_landmarks: bool = True
    refine_face_landmarks: bool = False
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


class GroundTruthConfig(StrictModel):
    """The synthetic corpus' saved keypoints: `path` relative to the split's video root, with
    {name} and {split} replaced; float32 (T, 133, 3) in source-video pixels. With `noise`, they are
    degraded as a pose estimator would deliver them (pipelines/keypoints/estimator_noise.py);
    without it (the default) they are the exact rendered keypoints."""

    path: str = "keypoints/{name}.npy"
    noise: EstimatorNoiseConfig | None = None


class KeypointConfig(StrictModel):
    backend: Backend = "none"
    dtype: Literal["float16", "float32"] = "float16"
    frame_batch_size: int = 16
    hrnet: HRNetConfig = HRNetConfig()
    mediapipe: MediaPipeConfig = MediaPipeConfig()
    groundtruth: GroundTruthConfig = GroundTruthConfig()


@dataclass
class VideoFrames:
    """What a back-end sees of one video: stored frames uint8 RGB (T, H, W, 3), the source frame
    index of each, and the crop/resize applied (to move source-pixel keypoints)."""

    name: str
    frames: np.ndarray
    indices: np.ndarray
    geometry: Geometry
    keypoints_path: str = ""


class KeypointEstimator(Protocol):
    name: str

    def estimate(self, videos: Sequence[VideoFrames]) -> list[np.ndarray]:
        """float32 (T_i, 133, 3) per video. Raise to mark every video of the call as failed."""
        ...


def empty_keypoints(num_frames: int) -> np.ndarray:
    return np.zeros((num_frames, NUM_KEYPOINTS, 3), np.float32)


def make_estimator(config: KeypointConfig) -> KeypointEstimator:
    """Build (and load) the configured back-end. Heavy imports happen here, inside the actor."""
    if config.backend == "groundtruth":
        from pipelines.keypoints.groundtruth import GroundTruthKeypoints

        return GroundTruthKeypoints(config.groundtruth)
    if config.backend == "mediapipe":
        from pipelines.keypoints.mediapipe_holistic import MediaPipeHolistic

        return MediaPipeHolistic(config.mediapipe)
    if config.backend == "hrnet":
        from pipelines.keypoints.hrnet import HRNetWholeBody

        return HRNetWholeBody(config.hrnet, frame_batch_size=config.frame_batch_size)
    raise ValueError(f"keypoint back-end {config.backend!r} estimates nothing (use it only to skip the stage)")


def _check_output(kp: np.ndarray, num_frames: int, name: str) -> np.ndarray:
    if kp.shape != (num_frames, NUM_KEYPOINTS, 3):
        raise ValueError(f"{name}: back-end returned keypoints of shape {kp.shape}, expected ({num_frames}, {NUM_KEYPOINTS}, 3)")
    if not np.isfinite(kp).all():
        raise ValueError(f"{name}: back-end returned non-finite keypoints")
    return kp


class KeypointStage:
    """Ray Data actor: adds `keypoints` (float16/32 (T, 133, 3)) and `keypoint_seconds` columns.

    Rows that already carry an error (`error_stage` non-empty) pass through with empty keypoints.
    """

    def __init__(self, config: dict):
        self.config = KeypointConfig.model_validate(config)
        self.dtype = np.dtype(self.config.dtype)
        self.estimator = make_estimator(self.config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["name"])
        keypoints: list[np.ndarray] = [np.zeros((0, NUM_KEYPOINTS, 3), self.dtype)] * n
        stages = [str(s) for s in batch["error_stage"]]
        messages = [str(m) for m in batch["error_message"]]
        todo = [i for i in range(n) if not stages[i]]
        videos = [
            VideoFrames(
                str(batch["name"][i]),
                np.asarray(batch["frames"][i]),
                np.asarray(batch["frame_indices"][i]),
                Geometry(*np.asarray(batch["geometry"][i], dtype=np.float64).tolist()),
                str(batch["keypoints_path"][i]),
            )
            for i in todo
        ]
        start = time.perf_counter()
        try:
            results = self.estimator.estimate(videos)
        except Exception:  # one bad video must not sink the batch: retry one by one
            results = []
            for v in videos:
                try:
                    results.extend(self.estimator.estimate([v]))
                except Exception as exc:
                    results.append(exc)
        seconds = time.perf_counter() - start
        for i, v, kp in zip(todo, videos, results):
            try:
                if isinstance(kp, Exception):
                    raise kp
                keypoints[i] = _check_output(np.asarray(kp, np.float32), len(v.frames), v.name).astype(self.dtype)
            except Exception as exc:
                stages[i], messages[i] = "keypoints", f"{self.config.backend}: {type(exc).__name__}: {exc}"
        out = dict(batch)
        out["keypoints"] = _object_array(keypoints)
        out["error_stage"] = np.array(stages, dtype=object)
        out["error_message"] = np.array(messages, dtype=object)
        out["keypoint_seconds"] = np.full(n, seconds / max(1, len(todo)), np.float64)
        return out


def _object_array(items: list) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr
