"""`hrnet` back-end: mmpose top-down HRNet on COCO-WholeBody (133 points), the papers' keypoints.

The person box is the whole frame (one framed signer, as in PHOENIX and CSL-Daily) or, with a
detector configured, the best mmdet person box per frame. Frames of all videos in a call are
batched `frame_batch_size` at a time through mmpose's test pipeline (affine crop to the model
input, e.g. 288x384) and `model.test_step`. Scores are the heatmap maxima clipped to [0, 1].

torchvision stays out of the import path: mmpose imports it only in `mmpose.visualization`
(reached through `mmpose.apis`), so the model is built here from mmengine/mmpose parts instead of
`mmpose.apis.init_model`; nothing on this path needs torchvision, and torch 2.13 CPU has no
matching torchvision wheel. (The optional detector goes through `mmdet.apis`; see
`_load_detector`.)

Install with `bash scripts/install_keypoints.sh hrnet` (builds mmcv 2.1.0 once; see the script).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pipelines.keypoints.base import NUM_KEYPOINTS, HRNetConfig, VideoFrames

CONFIG_DIR = "configs/wholebody_2d_keypoint/topdown_heatmap/coco-wholebody"


def _import_mm():
    try:
        import mmcv  # noqa: F401
        import mmpose  # noqa: F401
        from mmcv.ops import nms  # noqa: F401  (mmcv built with its compiled ops)
    except ImportError as exc:
        raise ImportError(f"keypoint back-end 'hrnet' needs mmpose 1.3.2 + mmcv 2.1.0 with ops: run `bash scripts/install_keypoints.sh hrnet` ({exc})") from exc


def resolve_config(name: str) -> str:
    """A config path, or the name of one of the COCO-WholeBody configs shipped with mmpose."""
    if os.path.exists(name):
        return name
    import mmpose

    shipped = Path(mmpose.__file__).parent / ".mim" / CONFIG_DIR / name
    if shipped.exists():
        return str(shipped)
    raise FileNotFoundError(f"HRNet config {name!r}: neither a file nor one of mmpose's {CONFIG_DIR} configs")


def build_pose_model(config_file: str, checkpoint: str | None, device: str):
    """What `mmpose.apis.init_model` does, without importing `mmpose.apis` (and torchvision)."""
    from mmengine.config import Config
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.models.builder import build_pose_estimator
    from mmpose.registry import DATASETS

    cfg = Config.fromfile(config_file)
    if "init_cfg" in cfg.model.backbone:
        cfg.model.backbone.init_cfg = None  # never fetch ImageNet weights
    cfg.model.train_cfg = None
    init_default_scope(cfg.get("default_scope", "mmpose"))
    model = revert_sync_batchnorm(build_pose_estimator(cfg.model))
    meta = None
    if checkpoint is not None:
        if not os.path.exists(checkpoint):
            raise FileNotFoundError(f"HRNet checkpoint {checkpoint}: not found (weights load from local paths only)")
        ckpt = load_checkpoint(model, checkpoint, map_location="cpu")
        meta = ckpt.get("meta", {}).get("dataset_meta")
    if meta is None:
        import mmpose.datasets.datasets  # noqa: F401  (registers the dataset classes)

        dataset = cfg.train_dataloader.dataset
        metainfo = dataset.metainfo if "metainfo" in dataset else DATASETS.get(dataset.type).METAINFO
        meta = parse_pose_metainfo(metainfo)
    model.dataset_meta = meta
    model.cfg = cfg
    return model.to(device).eval()


class HRNetWholeBody:
    name = "hrnet"

    def __init__(self, config: HRNetConfig, frame_batch_size: int = 16):
        _import_mm()
        import torch
        from mmengine.dataset import Compose

        self.torch = torch
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
        self.model = build_pose_model(resolve_config(config.config), config.checkpoint, self.device)
        num = self.model.dataset_meta.get("num_keypoints")
        if num != NUM_KEYPOINTS:
            raise ValueError(f"HRNet config {config.config}: {num} keypoints, the shards need COCO-WholeBody's {NUM_KEYPOINTS}")
        self.pipeline = Compose(self.model.cfg.test_dataloader.dataset.pipeline)
        self.frame_batch_size = frame_batch_size
        self.detector = self._load_detector(config) if config.detector_config else None
        self.detector_score = config.detector_score

    def _load_detector(self, config: HRNetConfig):
        from mmdet.apis import init_detector

        if not config.detector_checkpoint or not os.path.exists(config.detector_checkpoint):
            raise FileNotFoundError(f"detector checkpoint {config.detector_checkpoint}: not found")
        return init_detector(config.detector_config, config.detector_checkpoint, device=self.device)

    def _boxes(self, frames_bgr: list[np.ndarray]) -> list[np.ndarray]:
        """One (x0, y0, x1, y1) person box per frame."""
        boxes = []
        for f in frames_bgr:
            box = np.array([0, 0, f.shape[1], f.shape[0]], np.float32)
            if self.detector is not None:
                from mmdet.apis import inference_detector

                pred = inference_detector(self.detector, f).pred_instances.cpu().numpy()
                keep = (pred.labels == 0) & (pred.scores >= self.detector_score)
                if keep.any():
                    box = pred.bboxes[keep][np.argmax(pred.scores[keep])].astype(np.float32)
            boxes.append(box)
        return boxes

    def estimate(self, videos: Sequence[VideoFrames]) -> list[np.ndarray]:
        from mmengine.dataset import pseudo_collate

        frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for v in videos for f in v.frames]  # mmpose expects BGR
        boxes = self._boxes(frames)
        out = np.zeros((len(frames), NUM_KEYPOINTS, 3), np.float32)
        meta = self.model.dataset_meta
        for start in range(0, len(frames), self.frame_batch_size):
            data = []
            for i in range(start, min(start + self.frame_batch_size, len(frames))):
                info = {"img": frames[i], "bbox": boxes[i][None], "bbox_score": np.ones(1, np.float32)}
                info.update(meta)
                data.append(self.pipeline(info))
            with self.torch.no_grad():
                results = self.model.test_step(pseudo_collate(data))
            for j, r in enumerate(results):
                out[start + j, :, :2] = r.pred_instances.keypoints[0]
                out[start + j, :, 2] = r.pred_instances.keypoint_scores[0]
        bad = ~np.isfinite(out).all(axis=2)
        out[bad] = 0.0
        out[..., 2] = np.clip(out[..., 2], 0.0, 1.0)
        out[out[..., 2] <= 0] = 0.0
        splits = np.cumsum([len(v.frames) for v in videos])[:-1]
        return list(np.split(out, splits))
