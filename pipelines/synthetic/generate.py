"""Rendering one sentence video and writing the corpus files of the synthetic signing corpus.

Per language folder `<out_dir>/<code>/`:
    <code>.<split>.corpus.csv     PHOENIX-2014T format: name|video|start|end|speaker|orth|translation
    videos/<name>.mp4             25 fps, 'mp4v', one frame per keypoint row
    keypoints/<name>.npy          float32 (T, 133, 3) COCO-WholeBody: x, y (pixels), score
    frames/<name>/1/images0001.png ...   only with write_frame_folders
    signs.<split>.jsonl           {"name", "signs": [{"gloss", "start", "end" (exclusive), "cue"}], "signer"}
Every file is written under a temporary name and renamed; a video's keypoints come last, so a
video whose `.npy` exists is complete.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from common.files import atomic_directory, atomic_write_text, atomic_write_with
from pipelines.synthetic.motion import Articulation, MotionParams, sentence_poses
from pipelines.synthetic.primitives import SignPrimitive
from pipelines.synthetic.signer import SignerStyle, draw_keypoints, pose_keypoints, render_frame

CSV_COLUMNS = ("name", "video", "start", "end", "speaker", "orth", "translation")


@dataclass(frozen=True)
class RecordingConditions:
    """How the camera and the studio degrade each video's pixels; the keypoints never change.

    exposure: shutter time as a fraction of the frame interval; the frame averages `subframes`
    renders spread over it (motion blur trailing the movement). illumination: each video's
    brightness gain is drawn from 1 ± illumination; colour_cast: std of a further per-channel gain.
    clutter: blurred shapes painted on each video's background, each channel up to
    ± clutter_contrast (0-255) from the background colour. noise_std: per-pixel
    Gaussian sensor noise, on the 0-255 scale. All zero: the clean studio corpus.
    """

    exposure: float = 0.0
    subframes: int = 4
    illumination: float = 0.0
    colour_cast: float = 0.0
    clutter: int = 0
    clutter_contrast: int = 255
    noise_std: float = 0.0


@dataclass(frozen=True)
class RenderSettings:
    """Settings shared by every video: frame size (pixels), fps, timing, noise, outputs."""

    width: int
    height: int
    fps: int
    motion: MotionParams
    keypoint_noise_px: float  # std of Gaussian noise on the saved keypoints (not on the drawing)
    write_frame_folders: bool
    recording: RecordingConditions = RecordingConditions()


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video; deterministic given `seed`."""

    name: str
    language: str
    split: str
    signer: SignerStyle
    signs: tuple[tuple[str, SignPrimitive, str | None], ...]  # (gloss, primitive, cue)
    text: str
    seed: int
    articulation: Articulation = Articulation()  # the signer's idiolect


@dataclass(frozen=True)
class VideoResult:
    """What was written for one video, for the CSVs, the jsonl files and the summary."""

    name: str
    language: str
    split: str
    signer: str
    glosses: tuple[str, ...]
    text: str
    num_frames: int
    signs: tuple[dict, ...]  # {"gloss", "start", "end" (exclusive), "cue"}


def _timeline(spec: VideoSpec, settings: RenderSettings, rng: np.random.Generator) -> tuple[np.ndarray, tuple[dict, ...]]:
    poses, spans = sentence_poses([(p, cue) for _, p, cue in spec.signs], spec.signer.speed, spec.signer.jitter, rng, settings.motion,
                                  spec.articulation)
    signs = tuple({"gloss": g, "start": s, "end": e, "cue": cue} for (g, _, cue), (s, e) in zip(spec.signs, spans))
    return poses, signs


def render_video(spec: VideoSpec, settings: RenderSettings) -> tuple[np.ndarray, np.ndarray, tuple[dict, ...]]:
    """Frames uint8 BGR (T, H, W, 3), saved keypoints float32 (T, 133, 3) and the sign spans."""
    rng = np.random.default_rng(spec.seed)
    poses, signs = _timeline(spec, settings, rng)
    keypoints = pose_keypoints(poses, spec.signer, settings.width, settings.height)
    rec = settings.recording
    # The recording's own random stream: a clean and a degraded corpus share every keypoint.
    rec_rng = np.random.default_rng([spec.seed, 1])
    background = cluttered_background(spec.signer, settings.width, settings.height, rec.clutter, rec.clutter_contrast, rec_rng) if rec.clutter else None
    frames = np.stack([_exposed_frame(keypoints, t, spec.signer, settings, background) for t in range(len(keypoints))])
    frames = _camera(frames, rec, rec_rng)
    return frames, observed_keypoints(keypoints, settings.keypoint_noise_px, rng, settings.width, settings.height), signs


def cluttered_background(style: SignerStyle, width: int, height: int, shapes: int, contrast: int, rng: np.random.Generator) -> np.ndarray:
    """The signer's background colour with `shapes` soft ellipses whose channels differ from it by up
    to ± `contrast` (0-255). uint8 BGR (H, W, 3)."""
    base = np.array(style.background[::-1])
    img = np.empty((height, width, 3), np.uint8)
    img[:] = base
    for _ in range(shapes):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(width // 16, width // 4)), int(rng.integers(height // 16, height // 4)))
        colour = tuple(int(c) for c in np.clip(base + rng.integers(-contrast, contrast + 1, 3), 0, 255))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), max(1.0, width / 128))


def _exposed_frame(keypoints: np.ndarray, t: int, style: SignerStyle, settings: RenderSettings, background: np.ndarray | None) -> np.ndarray:
    """Frame t: one render at the keypoints, or with exposure > 0 the mean of renders at poses
    interpolated back towards frame t-1 over the shutter time."""
    rec = settings.recording
    if rec.exposure <= 0 or t == 0:
        return render_frame(keypoints[t], style, settings.width, settings.height, background)
    acc = np.zeros((settings.height, settings.width, 3), np.float32)
    for f in np.linspace(0.0, rec.exposure, rec.subframes):
        pose = keypoints[t] + f * (keypoints[t - 1] - keypoints[t])
        acc += render_frame(pose, style, settings.width, settings.height, background)
    return np.round(acc / rec.subframes).astype(np.uint8)


def _camera(frames: np.ndarray, rec: RecordingConditions, rng: np.random.Generator) -> np.ndarray:
    """Per-video illumination and colour cast, per-pixel sensor noise. uint8 (T, H, W, 3) in and out."""
    if rec.illumination == 0 and rec.colour_cast == 0 and rec.noise_std == 0:
        return frames
    gain = rng.uniform(1 - rec.illumination, 1 + rec.illumination) * (1 + rng.normal(0.0, rec.colour_cast, 3))
    out = frames.astype(np.float32) * gain.astype(np.float32)
    if rec.noise_std > 0:
        out += rng.normal(0.0, rec.noise_std, out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def observed_keypoints(keypoints: np.ndarray, noise_px: float, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """The keypoints as saved: optional pixel noise, clipped to the frame; score-0 points at (0, 0)."""
    out = keypoints.copy()
    if noise_px > 0:
        out[..., :2] += rng.normal(0.0, noise_px, out[..., :2].shape).astype(np.float32)
        out[..., 0] = np.clip(out[..., 0], 0, width - 1)
        out[..., 1] = np.clip(out[..., 1], 0, height - 1)
    out[out[..., 2] == 0, :2] = 0.0
    return out


def video_paths(lang_dir: Path, name: str) -> dict[str, Path]:
    return {
        "video": lang_dir / "videos" / f"{name}.mp4",
        "keypoints": lang_dir / "keypoints" / f"{name}.npy",
        "frames": lang_dir / "frames" / name,
    }


def write_video(spec: VideoSpec, settings: RenderSettings, out_dir: str | Path, resume: bool = False) -> VideoResult:
    """Render one video and write its .mp4, .npy (and frame folder); with `resume`, a video whose
    keypoints file already exists is only re-timed, not re-rendered."""
    paths = video_paths(Path(out_dir) / spec.language, spec.name)
    if resume and paths["keypoints"].exists():
        poses, signs = _timeline(spec, settings, np.random.default_rng(spec.seed))
        num_frames = len(poses)
    else:
        frames, keypoints, signs = render_video(spec, settings)
        num_frames = len(frames)
        write_mp4(paths["video"], frames, settings.fps)
        if settings.write_frame_folders:
            write_frame_folder(paths["frames"], frames)
        _save_npy(paths["keypoints"], keypoints)
    glosses = tuple(g for g, _, _ in spec.signs)
    return VideoResult(spec.name, spec.language, spec.split, spec.signer.signer_id, glosses, spec.text, num_frames, signs)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Write BGR frames (T, H, W, 3) as an 'mp4v' .mp4, atomically."""
    height, width = frames.shape[1:3]

    def write(tmp: Path) -> None:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"{tmp}: OpenCV cannot open an 'mp4v' video writer")
        for frame in frames:
            writer.write(frame)
        writer.release()

    atomic_write_with(path, write)


def write_frame_folder(folder: Path, frames: np.ndarray) -> None:
    """PHOENIX-style frame folder `<folder>/1/images0001.png ...`, replaced as a whole."""
    with atomic_directory(folder) as tmp:
        (tmp / "1").mkdir()
        for i, frame in enumerate(frames, start=1):
            cv2.imwrite(str(tmp / "1" / f"images{i:04d}.png"), frame)


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_with(path, lambda tmp: np.save(tmp, array))


def write_split_files(lang_dir: Path, code: str, split: str, results: Sequence[VideoResult]) -> None:
    """`<code>.<split>.corpus.csv` and `signs.<split>.jsonl` for one language and split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    lines = []
    for r in results:
        writer.writerow([r.name, f"videos/{r.name}.mp4", 0, r.num_frames - 1, r.signer, " ".join(r.glosses), r.text])
        lines.append(json.dumps({"name": r.name, "signs": list(r.signs), "signer": r.signer}, ensure_ascii=False))
    atomic_write_text(lang_dir / f"{code}.{split}.corpus.csv", buffer.getvalue())
    atomic_write_text(lang_dir / f"signs.{split}.jsonl", "".join(line + "\n" for line in lines))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _sheet_times(num_frames: int, signs: Sequence[dict], columns: int) -> list[int]:
    times = [(s["start"] + s["end"] - 1) // 2 for s in signs][:columns]
    for t in np.linspace(0, num_frames - 1, columns).round().astype(int):
        if len(times) < columns and int(t) not in times:
            times.append(int(t))
    return sorted(times)


def contact_sheet(videos: Sequence[tuple[VideoSpec, np.ndarray, np.ndarray, Sequence[dict]]], columns: int = 8, scale: int = 2) -> np.ndarray:
    """A grid for people: per video (frames, keypoints, signs) a title, `columns` frames (the
    middle of each sign, then evenly spaced ones) upscaled `scale`×, the same frames faded with
    their keypoints drawn, and the gloss being signed (`+` = with the intensity cue, `-` =
    transition or rest)."""
    blocks = []
    for spec, frames, keypoints, signs in videos:
        height, width = frames.shape[1] * scale, frames.shape[2] * scale
        title = np.full((22, width * columns, 3), 255, np.uint8)
        glosses = " ".join(g for g, _, _ in spec.signs)
        cv2.putText(title, _ascii(f"{spec.name} [{spec.signer.signer_id}]  {glosses}  |  {spec.text}"), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        raw, marked, captions = [], [], []
        for t in _sheet_times(len(frames), signs, columns):
            big = cv2.resize(frames[t], (width, height), interpolation=cv2.INTER_LINEAR)
            raw.append(big)
            marked.append(draw_keypoints((0.45 * big + 140).astype(np.uint8), keypoints[t], scale))
            label = next((s["gloss"] + ("+" if s["cue"] else "") for s in signs if s["start"] <= t < s["end"]), "-")
            caption = np.full((18, width, 3), 255, np.uint8)
            cv2.putText(caption, f"{t:3d} {label}", (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            captions.append(caption)
        blocks.append(np.vstack([title, np.hstack(raw), np.hstack(captions), np.hstack(marked), np.full((6, width * columns, 3), 255, np.uint8)]))
    width = max(b.shape[1] for b in blocks)
    return np.vstack([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks])
