"""The torch collate every trainer uses on preprocessed shards: decode, augment, pad.

    collate = VideoCollate(VideoCollateConfig(height=224, width=224), train=True, generator=0)
    for batch in read_shards(root, dataset, "train").iter_torch_batches(batch_size=8, collate_fn=collate): ...

Input: rows of the shards, either Ray's column dict (`iter_batches` / `iter_torch_batches`) or a
list of row dicts. Output:
    frames         float32 (B, T_max, 3, H, W), RGB in [0, 1] (or (x - mean) / std); zero padded
    frame_lengths  int64 (B,)
    keypoints      float32 (B, T_max, 133, 3): x, y moved exactly like the frames (output pixels,
                   pixel-index units), score; zero padded; all zero when the shards have none
    crop_zoom      float32 (B, 2): how much larger (x, y) the clip's crop shows things than the
                   evaluation view of the same frame (eval box size / crop box size; 1 in evaluation),
                   for Gaussian heatmaps whose width follows the crop as the public code's do
    names, glosses (space-separated strings), texts (str or None)

Training augmentation (the recognition papers'): each clip gets a random length in [0.5 T, 1.5 T]
rounded to a multiple of 4, reached with evenly spaced (nearest-neighbour) frame indices
(`temporal_sampling: even`) or, as the public code, by dropping or repeating random frames in
order (`random`), the keypoints taking the same indices; one RandomResizedCrop box per clip
(scale (0.7, 1), ratio (0.75, 1.3)) resized to the output size; colour jitter with p = 0.3 (same
factors for every frame of a clip); no flip (handedness carries meaning). Evaluation: the whole
frame (or a centre crop, optionally a fraction of the largest one) resized, all frames (or, as the
public code: clips longer than `max_frames` cut to their centre, lengths cut to a multiple of 4),
deterministic. Padding: zeros, or (`pad: replicate`, the public code) the clip's last frame and
keypoints repeated.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import torch
from pydantic import Field
from ray.data.collate_fn import NumpyBatchCollateFn

from common.config import StrictModel

NUM_KEYPOINTS = 133
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)  # OpenCV >= 4.10 decodes JPEG straight to RGB


class VideoCollateConfig(StrictModel):
    height: int = Field(224, ge=1)
    width: int = Field(224, ge=1)
    crop_scale: tuple[float, float] = (0.7, 1.0)  # area fraction of the RandomResizedCrop box
    crop_ratio: tuple[float, float] = (0.75, 1.3)  # its width / height
    color_jitter_p: float = Field(0.3, ge=0, le=1)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of a full turn of the chroma plane (YIQ rotation)
    temporal_scale: tuple[float, float] = (0.5, 1.5)
    length_multiple: int = Field(4, ge=1)  # train lengths are multiples of this
    # how a training clip reaches its drawn length: "even" - evenly spaced (nearest-neighbour)
    # frame indices; "random" - the public code's: a length drawn from the integers in
    # [int(0.5 T), int(1.5 T)], rounded up to length_multiple, reached by dropping random frames or
    # repeating random frames (order kept)
    temporal_sampling: Literal["even", "random"] = "even"
    max_frames: int | None = 400  # longer clips are resampled down (uniformly) to this (evaluation: eval_long_clips)
    eval_crop: Literal["whole", "center"] = "whole"  # centre: the largest box of the output aspect
    # with eval_crop center: the box's sides as this fraction of that largest box (the public code's
    # CSL-Daily centre crop, 270 px of its 320 px frames: 0.84375)
    eval_crop_fraction: float = Field(1.0, gt=0, le=1)
    # evaluation clips longer than max_frames: "resample" (evenly, as training) or "center" - their
    # centre max_frames frames (the public code)
    eval_long_clips: Literal["resample", "center"] = "resample"
    eval_length_multiple: int = Field(1, ge=1)  # evaluation lengths cut to a multiple of this (trailing frames dropped; public: 4)
    mean: list[float] | None = None
    std: list[float] | None = None
    pad: Literal["zero", "replicate"] = "zero"
    num_threads: int = Field(1, ge=1)  # decode clips in parallel threads (cv2 releases the GIL)
    # OpenCV's own thread pool per resize: its workers spin beside the training threads (on the
    # 2-core demo they took a fifth of the CPU and a third as kernel time); None leaves OpenCV's default
    cv2_threads: int | None = 1


def rows_of(batch: Any) -> list[dict]:
    """Ray's numpy column dict (one array per column) or a list of row dicts -> row dicts."""
    if isinstance(batch, dict):
        n = len(batch["name"])
        return [{k: v[i] for k, v in batch.items()} for i in range(n)]
    return list(batch)


def resample_indices(num_frames: int, length: int) -> np.ndarray:
    """Nearest-neighbour indices that stretch/shrink `num_frames` frames to `length`."""
    idx = np.floor((np.arange(length) + 0.5) * num_frames / length).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def random_temporal_indices(num_frames: int, scale: Sequence[float], multiple: int, max_frames: int | None,
                            rng: np.random.Generator) -> np.ndarray:
    """The public code's temporal augmentation: a length drawn uniformly from the integers in
    [int(scale[0] T), int(scale[1] T)] (at most `max_frames`), rounded up to a multiple of
    `multiple`; the clip reaches it by dropping random frames (no frame twice) or by keeping every
    frame and repeating random ones. Returns sorted frame indices (the clip's order kept)."""
    cap = max(multiple, max_frames // multiple * multiple) if max_frames else None
    hi = int(scale[1] * num_frames) if cap is None else min(cap, int(scale[1] * num_frames))
    lo = min(int(scale[0] * num_frames), hi)
    length = max(multiple, -(-int(rng.integers(lo, hi + 1)) // multiple) * multiple)
    if cap is not None:
        length = min(length, cap)
    if length <= num_frames:
        return np.sort(rng.choice(num_frames, length, replace=False)).astype(np.int64)
    repeats = rng.integers(0, num_frames, length - num_frames)
    return np.sort(np.concatenate([np.arange(num_frames), repeats])).astype(np.int64)


def eval_indices(num_frames: int, max_frames: int | None, long_clips: str = "resample", multiple: int = 1) -> np.ndarray:
    """Frame indices of an evaluation clip: all frames; a clip longer than `max_frames` resampled
    evenly to it or (`long_clips="center"`) cut to its centre `max_frames`; then, with `multiple`
    above 1, the length cut down to a multiple of it (clips shorter than `multiple` are kept whole)."""
    if max_frames and num_frames > max_frames and long_clips == "center":
        start = (num_frames - max_frames) // 2
        idx = np.arange(start, start + max_frames, dtype=np.int64)
    else:
        idx = resample_indices(num_frames, min(num_frames, max_frames) if max_frames else num_frames)
    if multiple > 1 and len(idx) >= multiple:
        idx = idx[: len(idx) // multiple * multiple]
    return idx


def random_resized_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) as torchvision's RandomResizedCrop draws it (10 tries, then a centre crop)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def center_box(height: int, width: int, out_h: int, out_w: int, fraction: float = 1.0) -> tuple[int, int, int, int]:
    """The largest centred box with the output's aspect ratio; with `fraction` < 1, a centred box
    whose sides are that fraction of the largest one's."""
    aspect = out_w / out_h
    w, h = (width, int(round(width / aspect))) if width / height < aspect else (int(round(height * aspect)), height)
    w, h = min(w, width), min(h, height)
    if fraction != 1.0:
        w, h = max(1, int(round(w * fraction))), max(1, int(round(h * fraction)))
    return (width - w) // 2, (height - h) // 2, w, h


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)


def color_jitter(clip: torch.Tensor, b: float, c: float, s: float, h: float) -> torch.Tensor:
    """clip float (T, 3, H, W) RGB in [0, 1]; the same factors for every frame."""
    clip = clip * b
    gray = (0.299 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2]).unsqueeze(1)
    clip = (clip - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)
    gray = (0.299 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2]).unsqueeze(1)
    clip = (clip - gray) * s + gray
    if h:
        angle = 2 * math.pi * h
        rot = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]], np.float32)
        m = torch.from_numpy(_YIQ_INV @ rot @ _YIQ)
        clip = torch.einsum("ij,tjhw->tihw", m, clip)
    return clip.clamp_(0.0, 1.0)


def decode_jpeg_rgb(data: bytes, what: str) -> np.ndarray:
    """JPEG bytes -> uint8 RGB (H, W, 3); an undecodable frame raises naming `what`."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_RGB)
    if image is None:
        raise ValueError(f"{what} is not a decodable JPEG")
    if _IMREAD_RGB == cv2.IMREAD_COLOR:
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    return image


def predecode_row(row: dict, max_side: int | None = None) -> dict:
    """One shard row with its JPEG frames decoded to RGB uint8 (T, H, W, 3), shrunk (INTER_AREA) so
    the longer side is at most `max_side` px; `height`/`width` and the keypoints' x, y (pixel-index
    units) follow. VideoCollate takes such rows as it takes JPEG rows: a decoded in-memory cache."""
    frames = row["frames"]
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4:
        images = frames
    else:
        images = []
        for k, data in enumerate(frames):
            images.append(decode_jpeg_rgb(data, f"{row.get('name', '?')}: frame {k}"))
        images = np.stack(images) if images else np.zeros((0, int(row["height"]), int(row["width"]), 3), np.uint8)
    h, w = images.shape[1:3]
    scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
    out = dict(row)
    if scale < 1.0:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        images = np.stack([cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA) for im in images]) if len(images) else \
            np.zeros((0, nh, nw, 3), np.uint8)
        kp = row.get("keypoints")
        if kp is not None and len(kp):
            kp = np.array(kp, np.float32)
            present = kp[..., 2] > 0
            kp[..., 0] = (kp[..., 0] + 0.5) * (nw / w) - 0.5
            kp[..., 1] = (kp[..., 1] + 0.5) * (nh / h) - 0.5
            kp[~present] = 0.0
            out["keypoints"] = kp
        h, w = nh, nw
    out["frames"] = np.ascontiguousarray(images)
    out["height"], out["width"], out["num_frames"] = h, w, len(images)
    return out


class VideoCollate(NumpyBatchCollateFn):
    """Callable collate (see the module docstring). `generator`: a numpy Generator or a seed;
    the same seed gives the same batches. Also accepts a list of row dicts (torch DataLoader)."""

    def __init__(self, config: VideoCollateConfig | None = None, *, train: bool, generator: np.random.Generator | int | None = None):
        self.config = config or VideoCollateConfig()
        self.train = train
        self.rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
        self._pool: ThreadPoolExecutor | None = None
        c = self.config
        self._mean = torch.tensor(c.mean, dtype=torch.float32).view(1, 1, 3, 1, 1) if c.mean else None
        self._std = torch.tensor(c.std, dtype=torch.float32).view(1, 1, 3, 1, 1) if c.std else None

    def __getstate__(self) -> dict:  # picklable (e.g. shipped to Ray Train workers); threads are made on first use
        return {**self.__dict__, "_pool": None}

    # -- per clip parameters (drawn in the caller's thread, in row order: reproducible)
    def eval_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, w, h) of the evaluation view of a (height, width) frame."""
        c = self.config
        if c.eval_crop == "whole":
            return 0, 0, width, height
        return center_box(height, width, c.height, c.width, c.eval_crop_fraction)

    def _plan(self, num_frames: int, height: int, width: int) -> dict:
        c = self.config
        if self.train:
            if c.temporal_sampling == "random":
                indices = random_temporal_indices(num_frames, c.temporal_scale, c.length_multiple, c.max_frames, self.rng)
            else:
                u = self.rng.uniform(*c.temporal_scale)
                length = max(c.length_multiple, int(round(num_frames * u / c.length_multiple)) * c.length_multiple)
                if c.max_frames:
                    length = min(length, max(c.length_multiple, c.max_frames // c.length_multiple * c.length_multiple))
                indices = resample_indices(num_frames, length)
            box = random_resized_crop_box(height, width, c.crop_scale, c.crop_ratio, self.rng)
            _, _, ew, eh = self.eval_box(height, width)
            zoom = (ew / box[2], eh / box[3])
            jitter = None
            if self.rng.random() < c.color_jitter_p:
                jitter = (
                    self.rng.uniform(1 - c.brightness, 1 + c.brightness),
                    self.rng.uniform(max(0.0, 1 - c.contrast), 1 + c.contrast),
                    self.rng.uniform(max(0.0, 1 - c.saturation), 1 + c.saturation),
                    self.rng.uniform(-c.hue, c.hue),
                )
        else:
            indices = eval_indices(num_frames, c.max_frames, c.eval_long_clips, c.eval_length_multiple)
            box = self.eval_box(height, width)
            jitter, zoom = None, (1.0, 1.0)
        return {"indices": indices, "box": box, "jitter": jitter, "zoom": zoom}

    def _decode_clip(self, frames: Any, indices: np.ndarray, box: tuple[int, int, int, int], out: np.ndarray) -> None:
        """Fill out[:len(indices)] (uint8 RGB (T, H, W, 3)) with the cropped, resized frames."""
        c = self.config
        x0, y0, w, h = box
        interpolation = cv2.INTER_AREA if (w > c.width and h > c.height) else cv2.INTER_LINEAR
        raw = isinstance(frames, np.ndarray) and frames.dtype == np.uint8
        unique, inverse = np.unique(indices, return_inverse=True)
        for j, k in enumerate(unique):
            if raw:
                image = frames[k]
            else:
                image = decode_jpeg_rgb(frames[k], f"frame {k}")
            crop = image[y0 : y0 + h, x0 : x0 + w]
            if crop.shape[:2] == (c.height, c.width):
                out[j] = crop
            else:
                cv2.resize(crop, (c.width, c.height), dst=out[j], interpolation=interpolation)
        if len(unique) != len(indices):
            out[: len(indices)] = out[inverse.reshape(-1)]

    def plan(self, rows: list[dict]) -> list[dict]:
        """Draw each row's augmentation (frame indices, crop box, colour jitter), in row order.
        `len(plan["indices"])` is the clip's output length, e.g. for bucketing by length."""
        plans = []
        for r in rows:
            n = int(r["num_frames"]) if "num_frames" in r else len(r["frames"])
            plans.append(self._plan(n, int(r["height"]), int(r["width"])))
        return plans

    def __call__(self, batch: Any, plans: list[dict] | None = None) -> dict[str, Any]:
        """`plans`: from `plan(rows)` (drawn here when None)."""
        rows = rows_of(batch)
        c = self.config
        if c.cv2_threads is not None and cv2.getNumThreads() != c.cv2_threads:
            cv2.setNumThreads(c.cv2_threads)  # process-wide
        plans = self.plan(rows) if plans is None else plans
        if len(plans) != len(rows):
            raise ValueError(f"{len(plans)} plans for {len(rows)} rows")
        lengths = [len(p["indices"]) for p in plans]
        t_max = max(lengths) if lengths else 0
        buf = np.zeros((len(rows), t_max, c.height, c.width, 3), np.uint8)

        def work(i: int) -> None:
            self._decode_clip(rows[i]["frames"], plans[i]["indices"], plans[i]["box"], buf[i])
            if c.pad == "replicate" and 0 < lengths[i] < t_max:
                buf[i, lengths[i]:] = buf[i, lengths[i] - 1]

        if c.num_threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(c.num_threads)
            list(self._pool.map(work, range(len(rows))))
        else:
            for i in range(len(rows)):
                work(i)
        frames = torch.from_numpy(buf).permute(0, 1, 4, 2, 3).contiguous().float().div_(255.0)
        for i, p in enumerate(plans):
            if p["jitter"] is not None:
                frames[i, : lengths[i]] = color_jitter(frames[i, : lengths[i]], *p["jitter"])
                if c.pad == "replicate" and 0 < lengths[i] < t_max:
                    frames[i, lengths[i]:] = frames[i, lengths[i] - 1]  # copies of the jittered last frame
        if self._mean is not None:
            frames = (frames - self._mean) / (self._std if self._std is not None else 1.0)
            for i, n in enumerate(lengths):
                if c.pad == "zero":
                    frames[i, n:] = 0.0

        keypoints = torch.zeros((len(rows), t_max, NUM_KEYPOINTS, 3), dtype=torch.float32)
        for i, (r, p) in enumerate(zip(rows, plans)):
            kp = r.get("keypoints")
            if kp is None or len(kp) == 0:
                continue
            kp = np.asarray(kp, np.float32)[p["indices"]]
            x0, y0, w, h = p["box"]
            present = kp[..., 2] > 0
            kp[..., 0] = (kp[..., 0] + 0.5 - x0) * (c.width / w) - 0.5
            kp[..., 1] = (kp[..., 1] + 0.5 - y0) * (c.height / h) - 0.5
            kp[~present] = 0.0
            keypoints[i, : lengths[i]] = torch.from_numpy(kp)
            if c.pad == "replicate" and lengths[i] < t_max:
                keypoints[i, lengths[i]:] = keypoints[i, lengths[i] - 1]
        texts = []
        for r in rows:
            t = r.get("text")
            texts.append(None if t is None or (isinstance(t, float) and math.isnan(t)) else str(t))
        return {
            "frames": frames.contiguous(),
            "frame_lengths": torch.tensor(lengths, dtype=torch.int64),
            "keypoints": keypoints,
            "crop_zoom": torch.tensor([p.get("zoom", (1.0, 1.0)) for p in plans], dtype=torch.float32).reshape(len(plans), 2),
            "names": [str(r["name"]) for r in rows],
            "glosses": [str(r["gloss"]) for r in rows],
            "texts": texts,
        }
