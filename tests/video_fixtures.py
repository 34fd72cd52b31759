"""Small real video corpora for the preprocessing tests: mp4 files written with OpenCV, PNG/JPG
frame folders, zip archives, and keypoint files, in the synthetic corpus' layout.

Every frame shows a white square on a coloured background; keypoint 0 (nose) is the square's
centre, keypoint 9 (left wrist) its top-left pixel; all other points have score 0.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

W, H = 48, 40  # source frame size (width, height)


def square_position(t: int, index: int) -> tuple[int, int]:
    """Top-left pixel of the square in frame t of video `index`."""
    return 4 + (3 * t + 5 * index) % (W - 16), 4 + (2 * t + 3 * index) % (H - 16)


def make_frames(num_frames: int, index: int = 0) -> np.ndarray:
    """uint8 RGB (T, H, W, 3)."""
    frames = np.zeros((num_frames, H, W, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = ((40 + 10 * index) % 256, 90, 160)
        x, y = square_position(t, index)
        frames[t, y : y + 8, x : x + 8] = 255
    return frames


def make_keypoints(num_frames: int, index: int = 0) -> np.ndarray:
    kp = np.zeros((num_frames, 133, 3), np.float32)
    for t in range(num_frames):
        x, y = square_position(t, index)
        kp[t, 0] = (x + 3.5, y + 3.5, 1.0)
        kp[t, 9] = (x, y, 0.9)
    return kp


def write_mp4(path: Path, frames: np.ndarray, fps: float = 25.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened(), path
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def write_frame_folder(folder: Path, frames: np.ndarray, pattern: str = "images{:04d}.png", start: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(i + start)), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def write_corpus(
    root: Path,
    language: str = "aaa",
    splits: dict[str, int] | None = None,
    num_frames: int = 12,
    frames_too: bool = False,
) -> dict[str, list[str]]:
    """A synthetic-layout corpus under root/<language>/ (mp4 + keypoints, optional PNG frame
    folders). Returns names per split. Glosses: G<index % 3>, two per video."""
    splits = splits or {"train": 6, "dev": 2}
    lang = root / language
    names: dict[str, list[str]] = {}
    index = 0
    for split, count in splits.items():
        lines = ["name|video|start|end|speaker|orth|translation"]
        names[split] = []
        for _ in range(count):
            name = f"{split}_{index:03d}"
            n = num_frames + index % 3
            frames = make_frames(n, index)
            write_mp4(lang / "videos" / f"{name}.mp4", frames)
            (lang / "keypoints").mkdir(parents=True, exist_ok=True)
            np.save(lang / "keypoints" / f"{name}.npy", make_keypoints(n, index))
            if frames_too:
                write_frame_folder(lang / "frames" / name / "1", frames)
            lines.append(f"{name}|videos/{name}.mp4|0|{n - 1}|S{index % 2}|G{index % 3} G{(index + 1) % 3}|text {index}")
            names[split].append(name)
            index += 1
        (lang / f"{language}.{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    manifest_path = root / "synthetic.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"languages": {}, "fps": 25, "width": W, "height": H}
    manifest["languages"][language] = {"glosses": ["G0", "G1", "G2"], "splits": {s: len(v) for s, v in names.items()}}
    manifest_path.write_text(json.dumps(manifest))
    return names


def zip_frame_folders(folders: dict[str, np.ndarray], archive: Path, prefix: str = "images") -> None:
    """The public code's layout: <prefix>/<name>/images0001.png ... inside one zip."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as z:
        for name, frames in folders.items():
            for i, f in enumerate(frames):
                ok, buf = cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                z.writestr(f"{prefix}/{name}/images{i + 1:04d}.png", buf.tobytes())


def preprocess_corpus(root: Path, out: Path, language: str = "aaa", splits: tuple[str, ...] = ("train", "dev")) -> None:
    """Preprocess a corpus written by `write_corpus` into shards `<out>/syn_<language>/` (48x40 frames
    kept, ground-truth keypoints), with resources that fit the 2-CPU test fixture `ray_local`."""
    from jobs.preprocess import PreprocessConfig, run as preprocess

    preprocess(PreprocessConfig.model_validate({
        "name": "syn_{language}", "out_dir": str(out),
        "corpus": {"name": "synthetic", "format": "synthetic", "language": language, "root": str(root)},
        "splits": list(splits), "frames": {"resize": "none"},
        "keypoints": {"backend": "groundtruth", "dtype": "float16"},
        "shards": {"videos_per_block": 4},
        "resources": {"decode_cpus": 0.5, "encode_cpus": 0.5, "keypoint_cpus": 0.5, "keypoint_actors": 1, "videos_per_batch": 2},
    }))
