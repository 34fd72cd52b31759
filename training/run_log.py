"""Run logging on rank 0: `metrics.jsonl` (one JSON line per epoch), TensorBoard event files
(`tensorboard --logdir <run_dir or a parent>` shows every stage's curves) and a learning-curve PNG.

Every write is complete or absent: `metrics.jsonl` and the PNG are replaced atomically, and
a resumed run drops the TensorBoard events of epochs it is about to redo (`purge_step`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write_text, atomic_write_with

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveSpec:
    """What the learning-curve PNG plots per epoch: `left` metrics on the left axis (e.g. dev
    scores), `right` on the right one (e.g. the train loss); (metric key, legend label) pairs."""

    left: tuple[tuple[str, str], ...]
    left_label: str
    right: tuple[tuple[str, str], ...]
    right_label: str


def tensorboard_tag(key: str) -> str:
    """`train_loss` -> `train/loss`, `dev_wer_rgb` -> `dev/wer_rgb`, `lr` -> `run/lr`."""
    prefix, _, rest = key.partition("_")
    return f"{prefix}/{rest}" if prefix in ("train", "dev") and rest else f"run/{key}"


class RunLog:
    """Writes a run's logs after each epoch: `log.write(history)` with all epochs so far."""

    def __init__(self, run_dir: str | Path, curve: CurveSpec, title: str | None = None):
        self.run_dir = Path(run_dir)
        self.curve = curve
        self.title = title
        self._writer = None
        self._logged_epochs = 0

    def write(self, history: list[dict]) -> None:
        """Log the last epoch's metrics and rewrite the run's logs with all of `history`."""
        log.info("epoch %d: %s", history[-1]["epoch"],
                 {k: round(v, 4) if isinstance(v, float) else v for k, v in history[-1].items()})
        atomic_write_text(self.run_dir / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in history))
        self._write_tensorboard(history)
        plot_learning_curve(history, self.curve, self.run_dir / CURVE_FILE, self.title)

    def _write_tensorboard(self, history: list[dict]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self._writer is None:
            first_new = history[-1]["epoch"]
            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=first_new)
            self._logged_epochs = first_new - 1
        for entry in history:
            if entry["epoch"] <= self._logged_epochs:
                continue
            for key, value in entry.items():
                if key not in ("epoch", "wall_time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(tensorboard_tag(key), value, global_step=entry["epoch"])
            self._logged_epochs = entry["epoch"]
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_learning_curve(history: list[dict], curve: CurveSpec, path: str | Path, title: str | None = None) -> None:
    """Per epoch: `curve.left` metrics (solid) on the left axis, `curve.right` (dashed, black and
    grey) on the right axis. Missing or non-finite values are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list, list]:
        points = [(h["epoch"], h[key]) for h in history
                  if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        return [e for e, _ in points], [v for _, v in points]

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for key, label in curve.left:
        ax.plot(*series(key), "o-", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(curve.left_label)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    for (key, label), colour in zip(curve.right, ("black", "grey", "tab:brown")):
        ax2.plot(*series(key), "s--", color=colour, ms=2, label=label)
    ax2.set_ylabel(curve.right_label)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper center")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write_with(Path(path), lambda tmp: fig.savefig(tmp))
    plt.close(fig)


def read_scalars(log_dir: str | Path, tag: str) -> list[tuple[int, float]]:
    """(epoch, value) pairs of one TensorBoard tag (e.g. "dev/wer") in a run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars(tag)]
