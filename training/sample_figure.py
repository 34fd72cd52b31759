"""One sample for people to look at: a row of its frames with their keypoints, and below them the
predicted and reference glosses and texts (a PNG; matplotlib Agg, written atomically).

Size: each frame is `FRAME_PX` pixels wide (its height keeps the frames' aspect ratio), so the
image is n × FRAME_PX wide and frame height + `MARGIN_PX` + `LINE_PX` per text line high, at `DPI`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from common.files import atomic_write_with
from pipelines.keypoints.base import BODY, FACE, FEET, LEFT_HAND, RIGHT_HAND

DPI = 100
FRAME_PX = 200  # width of one frame in the figure
LINE_PX = 24  # one line of text
MARGIN_PX = 12  # between the frames and the text
CHAR_PX = 9  # at least one character of the 10-pt text: where lines wrap
GAP_PX = 4  # between frames
PARTS = ((BODY, "tab:red"), (FEET, "tab:red"), (FACE, "tab:cyan"), (LEFT_HAND, "tab:green"), (RIGHT_HAND, "gold"))


def sample_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """min(n, num_frames) evenly spaced frame indices from the first frame to the last, distinct."""
    count = min(n, num_frames)
    return np.floor(np.linspace(0, num_frames - 1, count) + 0.5).astype(np.int64)


def text_lines(items: list[tuple[str, str | None]], width_px: int) -> list[str]:
    """`label: text` per given item (None: left out), wrapped to the figure's width."""
    lines = []
    for label, text in items:
        if text is not None:
            lines.extend(textwrap.wrap(f"{label}: {text}", width=max(20, width_px // CHAR_PX)) or [f"{label}:"])
    return lines


def plot_sample(frames: np.ndarray, keypoints: np.ndarray | None, *, glosses_hyp: str | None, glosses_ref: str | None,
                text_hyp: str | None, text_ref: str | None, path: str | Path, n_frames: int = 8,
                score_threshold: float = 0.3) -> None:
    """Write a PNG of `n_frames` evenly spaced frames of `frames` (uint8 RGB (T, H, W, 3)), each with
    the points of `keypoints` ((T, K, 3): x, y in those frames' pixels, score; None: no points) whose
    score exceeds `score_threshold`, and below them the glosses and texts given (None: line left out).
    Raises ValueError when the shapes are wrong or frames and keypoints differ in length."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 RGB (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    if keypoints is not None:
        keypoints = np.asarray(keypoints, np.float32)
        if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
            raise ValueError(f"keypoints must be (T, K, 3), got {keypoints.shape}")
        if len(keypoints) != len(frames):
            raise ValueError(f"{len(keypoints)} frames of keypoints for {len(frames)} video frames: they must match")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = sample_frame_indices(len(frames), n_frames)
    height, width = frames.shape[1:3]
    fig_w, frame_h = len(times) * FRAME_PX, round(FRAME_PX * height / width)
    lines = text_lines([("glosses", glosses_hyp), ("reference glosses", glosses_ref), ("translation", text_hyp),
                        ("reference text", text_ref)], fig_w)
    fig_h = frame_h + MARGIN_PX + LINE_PX * len(lines)
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    for i, t in enumerate(times):
        ax = fig.add_axes((i * FRAME_PX / fig_w, 1 - frame_h / fig_h, (FRAME_PX - GAP_PX) / fig_w, frame_h / fig_h))
        ax.imshow(frames[t], interpolation="bilinear", aspect="auto")
        ax.set_axis_off()
        ax.text(3, 3, f"{t}", color="white", fontsize=8, va="top", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1})
        if keypoints is not None:
            for part, colour in PARTS:
                kp = keypoints[t, part]
                kp = kp[kp[:, 2] > score_threshold]
                ax.scatter(kp[:, 0], kp[:, 1], s=4, c=colour, linewidths=0)
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
    for k, line in enumerate(lines):
        y = fig_h - frame_h - MARGIN_PX - LINE_PX * (k + 0.5)
        fig.text(4 / fig_w, y / fig_h, line, fontsize=10, va="center", ha="left")
    atomic_write_with(Path(path), lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    plt.close(fig)
