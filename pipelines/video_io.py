"""Decode a sign video from any layout users have into uint8 RGB frames (T, H, W, 3).

Layouts: video files (.mp4, .avi, ... via OpenCV), folders of frame images (PHOENIX
`<name>/1/images0001.png`, CSL-Daily `<name>/000000.jpg`, or a glob such as `<name>/1/*.png`), and
zip archives of frame folders (the papers' public code: `images/<name>/images0001.png` inside a
zip). Paths may be local or any URI pyarrow's filesystem layer understands (`file://`, `s3://`).

Problems are reported, never hidden: `VideoError` for input that cannot be used (missing file,
corrupt or truncated video, zero frames, unreadable archive member, a frame count that disagrees
with the annotation), and `DecodedVideo.warnings` for input that was repaired (grayscale or RGBA
frames converted to RGB, frames of differing sizes resized to the first one).

Geometry: `FrameSpec` crops and resizes; `Geometry` says how a source pixel maps to a stored one,
so keypoints can be moved exactly like the frames. Keypoint coordinates throughout the project
are in pixel-index units: (0, 0) is the centre of the top-left pixel.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

import cv2
import numpy as np
import pyarrow.fs as pafs
from pydantic import model_validator

from common.config import StrictModel

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class VideoError(Exception):
    """A video that cannot be used. `stage` says where it failed ("locate", "decode", "check")."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


class FrameSpec(StrictModel):
    """How stored frames are made from decoded ones.

    crop: [x0, y0, x1, y1] box in source pixels applied first (CSL-Daily's public code keeps
        [0, 80, 512, 512] of its 512x512 frames); clipped to the frame.
    resize: "none" keeps the size; "fixed" -> width x height; "short_side" scales the shorter side
        to `short_side` keeping the aspect ratio; "fit" scales to fit inside width x height keeping
        the aspect ratio.
    frame_stride: keep every k-th frame (temporal subsampling); max_frames: keep at most this many
        (the first ones after striding).
    frame_count_tolerance: largest allowed |decoded - annotated| frame count.
    folder_fps: frame rate of frame folders (PHOENIX: 25); video files report their own.
    """

    crop: list[int] | None = None
    resize: Literal["none", "fixed", "short_side", "fit"] = "none"
    width: int | None = None
    height: int | None = None
    short_side: int | None = None
    frame_stride: int = 1
    max_frames: int | None = None
    frame_count_tolerance: int = 2
    folder_fps: float = 25.0  # frame rate recorded for frame folders/archives (videos carry their own)

    @model_validator(mode="after")
    def _check(self) -> "FrameSpec":
        if self.resize in ("fixed", "fit") and not (self.width and self.height):
            raise ValueError(f"resize={self.resize!r} needs width and height")
        if self.resize == "short_side" and not self.short_side:
            raise ValueError("resize='short_side' needs short_side")
        if self.crop is not None and (len(self.crop) != 4 or self.crop[2] <= self.crop[0] or self.crop[3] <= self.crop[1]):
            raise ValueError(f"crop must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {self.crop}")
        if self.frame_stride < 1 or (self.max_frames is not None and self.max_frames < 1):
            raise ValueError("frame_stride and max_frames must be >= 1")
        return self


@dataclass(frozen=True)
class Geometry:
    """Source pixel (x, y) -> stored pixel ((x + 0.5 - x0) * sx - 0.5, (y + 0.5 - y0) * sy - 0.5)."""

    x0: float = 0.0
    y0: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """xy (..., 2) in source pixel-index units -> stored pixel-index units."""
        out = np.empty_like(xy, dtype=np.float32)
        out[..., 0] = (xy[..., 0] + 0.5 - self.x0) * self.sx - 0.5
        out[..., 1] = (xy[..., 1] + 0.5 - self.y0) * self.sy - 0.5
        return out


@dataclass
class DecodedVideo:
    """frames: uint8 (T, H, W, 3) RGB; indices: source frame index of each kept frame."""

    frames: np.ndarray
    indices: np.ndarray
    source_frames: int
    fps: float | None
    geometry: Geometry = Geometry()
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- file systems

def resolve_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI (file://, s3://, gs://, hdfs://...)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _natural_key(path: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_file(path) as f:
        return f.read()


@functools.lru_cache(maxsize=8)
def _open_zip(uri: str) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """An open archive (cached per process: every video of a corpus lives in the same zip)."""
    fs, path = resolve_fs(uri)
    handle = open(path, "rb") if isinstance(fs, pafs.LocalFileSystem) else fs.open_input_file(path)
    try:
        archive = zipfile.ZipFile(handle)
    except BaseException:
        handle.close()
        raise
    return archive, {i.filename: i for i in archive.infolist() if not i.is_dir()}


# ----------------------------------------------------------------------------- locating

@dataclass(frozen=True)
class VideoSource:
    """Where one sample's frames are: a video file, image files, or members of a zip archive."""

    kind: Literal["file", "images", "zip"]
    location: str  # file/folder/glob URI or path; for "zip", the member path or glob inside `archive`
    archive: str | None = None

    def __str__(self) -> str:
        return f"{self.archive}@{self.location}" if self.archive else self.location


def locate(root: str, relative: str) -> VideoSource:
    """A sample's source from the video root (folder, URI or .zip file) and its relative path.

    `relative` may be a video file, a frame folder, or a glob (`name/1/*.png`). The public code's
    `archive.zip@member` form is accepted in either argument.
    """
    joined = _join(root, relative)
    if ".zip@" in joined:
        archive, member = joined.split(".zip@", 1)
        return VideoSource("zip", member.lstrip("/"), archive + ".zip")
    if root.endswith(".zip"):
        return VideoSource("zip", relative.lstrip("/"), root)
    if joined.lower().endswith(VIDEO_SUFFIXES):
        return VideoSource("file", joined)
    return VideoSource("images", joined)


def _join(root: str, relative: str) -> str:
    if not root:
        return relative
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", relative) or relative.startswith("/"):
        return relative
    return root.rstrip("/") + "/" + relative


def _list_images(names: list[str], location: str) -> list[str]:
    """Image members of `names` under `location` (a folder or a glob), naturally sorted."""
    location = location.rstrip("/")
    if any(c in location for c in "*?["):
        found = [n for n in names if fnmatch.fnmatchcase(n, location)]
    else:
        found = [n for n in names if n.startswith(location + "/") and "/" not in n[len(location) + 1:]]
        if not found:  # PHOENIX folders keep the frames one level down, in "<name>/1/"
            found = [n for n in names if n.startswith(location + "/1/") and "/" not in n[len(location) + 3:]]
    return sorted((n for n in found if n.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)


def _image_files(source: VideoSource) -> tuple[pafs.FileSystem, list[str]]:
    fs, path = resolve_fs(source.location)
    if any(c in path for c in "*?["):
        base = path
        while any(c in base for c in "*?["):
            base = str(PurePosixPath(base).parent)
    else:
        base = path
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise VideoError("locate", f"{source}: not found")
    if info.type != pafs.FileType.Directory:
        raise VideoError("locate", f"{source}: not a frame folder or a video file ({'/'.join(IMAGE_SUFFIXES)} frames, {'/'.join(VIDEO_SUFFIXES)} videos)")
    listing = [i.path for i in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if i.type == pafs.FileType.File]
    files = _list_images(listing, path)
    if not files:
        raise VideoError("decode", f"{source}: zero frames (no image files)")
    return fs, files


# ----------------------------------------------------------------------------- decoding

def _to_rgb(image: np.ndarray | None, where: str, warnings: set[str]) -> np.ndarray:
    """A decoded image (cv2.IMREAD_UNCHANGED, BGR order) as uint8 RGB; notes repairs."""
    if image is None:
        raise VideoError("decode", f"{where}: unreadable image")
    if image.dtype == np.uint16:
        warnings.add("16-bit frames converted to 8-bit")
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise VideoError("decode", f"{where}: unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        warnings.add("grayscale frames converted to RGB")
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        warnings.add("RGBA frames: alpha channel dropped")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] != 3:
        raise VideoError("decode", f"{where}: {image.shape[2]} channels")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_images(blobs: list[tuple[str, bytes]], warnings: set[str]) -> np.ndarray:
    frames = []
    for where, blob in blobs:
        image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED) if blob else None
        frame = _to_rgb(image, where, warnings)
        if frames and frame.shape != frames[0].shape:
            warnings.add(f"frames of differing sizes ({frame.shape[1]}x{frame.shape[0]} vs {frames[0].shape[1]}x{frames[0].shape[0]}) resized to the first")
            frame = cv2.resize(frame, (frames[0].shape[1], frames[0].shape[0]), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    return np.stack(frames)


def _decode_video_file(path: str, where: str) -> tuple[np.ndarray, float | None, int]:
    """(frames RGB, fps, frame count the container declares) of a local video file."""
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise VideoError("decode", f"{where}: cannot open video (corrupt, truncated or unsupported codec)")
        fps = capture.get(cv2.CAP_PROP_FPS) or None
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise VideoError("decode", f"{where}: zero frames decoded (corrupt, truncated or empty video)")
    return np.stack(frames), fps, declared


def _decode_video_bytes(blob: bytes, suffix: str, where: str) -> tuple[np.ndarray, float | None, int]:
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(blob)
        tmp.flush()
        return _decode_video_file(tmp.name, where)


def read_frames(source: VideoSource) -> tuple[np.ndarray, float | None, int | None, list[str]]:
    """All frames of a source: (uint8 RGB (T, H, W, 3), fps or None, declared count or None, warnings)."""
    warnings: set[str] = set()
    declared = None
    fps = None
    if source.kind == "zip":
        try:
            archive, members = _open_zip(source.archive)
        except FileNotFoundError:
            raise VideoError("locate", f"{source.archive}: archive not found") from None
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise VideoError("decode", f"{source.archive}: unreadable zip archive ({exc})") from None
        if source.location.lower().endswith(VIDEO_SUFFIXES):
            if source.location not in members:
                raise VideoError("locate", f"{source}: no such archive member")
            blob = _read_member(archive, members[source.location], source)
            frames, fps, declared = _decode_video_bytes(blob, PurePosixPath(source.location).suffix, str(source))
        else:
            names = _list_images(list(members), source.location)
            if not names:
                prefix = source.location.rstrip("/") + "/"
                what = "zero frames (no image members)" if any(n.startswith(prefix) for n in members) else "not found in archive"
                raise VideoError("locate" if "not found" in what else "decode", f"{source}: {what}")
            blobs = [(f"{source.archive}@{n}", _read_member(archive, members[n], source)) for n in names]
            frames = _decode_images(blobs, warnings)
    elif source.kind == "file":
        fs, path = resolve_fs(source.location)
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise VideoError("locate", f"{source}: video file not found")
        if isinstance(fs, pafs.LocalFileSystem):
            frames, fps, declared = _decode_video_file(path, str(source))
        else:
            frames, fps, declared = _decode_video_bytes(read_bytes(fs, path), PurePosixPath(path).suffix, str(source))
    else:
        fs, files = _image_files(source)
        blobs = []
        for f in files:
            try:
                blobs.append((f, read_bytes(fs, f)))
            except OSError as exc:
                raise VideoError("decode", f"{f}: unreadable frame file ({exc})") from None
        frames = _decode_images(blobs, warnings)
    return frames, fps, declared, sorted(warnings)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: VideoSource) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise VideoError("decode", f"{source.archive}@{info.filename}: unreadable archive member ({exc})") from None


# ----------------------------------------------------------------------------- geometry

def plan_geometry(height: int, width: int, spec: FrameSpec) -> tuple[tuple[int, int, int, int], tuple[int, int], Geometry]:
    """(crop box (x0, y0, x1, y1), output (width, height), geometry) for a source frame size."""
    x0, y0, x1, y1 = 0, 0, width, height
    if spec.crop is not None:
        x0, y0 = max(0, spec.crop[0]), max(0, spec.crop[1])
        x1, y1 = min(width, spec.crop[2]), min(height, spec.crop[3])
        if x1 <= x0 or y1 <= y0:
            raise VideoError("check", f"crop {spec.crop} lies outside the {width}x{height} frame")
    cw, ch = x1 - x0, y1 - y0
    if spec.resize == "none":
        out = (cw, ch)
    elif spec.resize == "fixed":
        out = (spec.width, spec.height)
    elif spec.resize == "short_side":
        s = spec.short_side / min(cw, ch)
        out = (max(1, round(cw * s)), max(1, round(ch * s)))
    else:  # fit
        s = min(spec.width / cw, spec.height / ch)
        out = (max(1, round(cw * s)), max(1, round(ch * s)))
    return (x0, y0, x1, y1), out, Geometry(float(x0), float(y0), out[0] / cw, out[1] / ch)


def transform_frames(frames: np.ndarray, spec: FrameSpec) -> tuple[np.ndarray, Geometry]:
    """Crop and resize uint8 frames (T, H, W, 3) as `spec` says."""
    (x0, y0, x1, y1), (ow, oh), geometry = plan_geometry(frames.shape[1], frames.shape[2], spec)
    frames = frames[:, y0:y1, x0:x1]
    if (ow, oh) == (x1 - x0, y1 - y0):
        return np.ascontiguousarray(frames), geometry
    shrink = ow < (x1 - x0) and oh < (y1 - y0)
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], oh, ow, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (ow, oh), interpolation=interpolation)
    return out, geometry


def subsample(num_frames: int, spec: FrameSpec) -> np.ndarray:
    """Indices of the frames kept by frame_stride and max_frames."""
    idx = np.arange(0, num_frames, spec.frame_stride)
    return idx[: spec.max_frames] if spec.max_frames else idx


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    """uint8 RGB frames (T, H, W, 3) -> JPEG bytes per frame, as the shards store them. Raises
    ValueError when OpenCV cannot encode a frame."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    encoded = []
    for k, frame in enumerate(np.asarray(frames)):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ValueError(f"frame {k}: JPEG encoding failed")
        encoded.append(buf.tobytes())
    return encoded


def decode_video(source: VideoSource, spec: FrameSpec, expected_frames: int | None = None) -> DecodedVideo:
    """Decode, check the frame count against the annotation, subsample, crop and resize.

    Raises VideoError when the count differs from `expected_frames` (or, when the annotation does
    not say, from the count the video container declares) by more than the tolerance.
    """
    frames, fps, declared, warnings = read_frames(source)
    count = len(frames)
    if expected_frames is not None and abs(count - expected_frames) > spec.frame_count_tolerance:
        raise VideoError("check", f"{source}: {count} frames decoded but the annotation says {expected_frames} (tolerance {spec.frame_count_tolerance})")
    if expected_frames is None and declared and abs(count - declared) > spec.frame_count_tolerance:
        raise VideoError("check", f"{source}: {count} frames decoded but the container declares {declared} (truncated?)")
    indices = subsample(count, spec)
    frames, geometry = transform_frames(frames[indices], spec)
    return DecodedVideo(frames, indices, count, fps or spec.folder_fps, geometry, list(warnings))
