"""Resumable train state: where a run is (epochs, steps, history, time trained) and everything
needed to continue it exactly (model, optimizer, scheduler, every random number generator).

`train_state.pt` in a checkpoint holds `capture(...)`'s dict; `restore(...)` loads it back into a
freshly built model, optimizer and scheduler and returns the run's `Progress`. The model weights
are stored in `train_state.pt` only when they differ from the exported `model/weights.pt` (an
exported EMA); otherwise `model/weights.pt` is the one copy.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

TRAIN_STATE_FILE = "train_state.pt"


def rng_state() -> dict:
    """The state of Python's, NumPy's, torch's (and CUDA's) global generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Progress:
    """How far a run is: `epoch` epochs and `step` optimizer steps done, `history` (one metrics
    dict per finished epoch) and `elapsed_before` seconds trained before this process started."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.time)

    def elapsed_s(self) -> float:
        """Seconds trained in all, this process included."""
        return self.elapsed_before + time.time() - self.started

    def end_epoch(self, metrics: dict) -> None:
        """Record a finished epoch (`metrics["epoch"]` is its 1-based number)."""
        self.history.append(metrics)
        self.epoch = metrics["epoch"]


def capture(progress: Progress, *, optimizer: torch.optim.Optimizer, scheduler: Any,
            model_weights: dict | None = None, **extra: Any) -> dict:
    """The dict saved as `train_state.pt` after an epoch (`progress` already counts it).
    `model_weights`: the trained weights when they are not the exported ones (see module doc)."""
    return {
        "model": model_weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "epoch": progress.epoch,
        "step": progress.step,
        "history": progress.history,
        "elapsed_s": progress.history[-1]["elapsed_s"] if progress.history else progress.elapsed_s(),
        **extra,
    }


def restore(checkpoint_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            map_location: str | torch.device = "cpu") -> tuple[Progress, dict]:
    """Load a checkpoint's train state into `model`, `optimizer`, `scheduler` and the global RNGs.
    Returns the run's progress and the raw state dict (for extras such as an EMA)."""
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / TRAIN_STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no {TRAIN_STATE_FILE}; not a resumable checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=False)
    weights = state.get("model")
    if weights is None:
        weights = torch.load(checkpoint_dir / "model" / "weights.pt", map_location=map_location, weights_only=True)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    progress = Progress(epoch=state["epoch"], step=state["step"], history=state["history"], elapsed_before=state["elapsed_s"])
    return progress, state


def resume(checkpoint: Any, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           map_location: str | torch.device = "cpu", rank: int = 0) -> tuple[Progress, dict]:
    """`restore` from a Ray Train checkpoint (`ray.train.get_checkpoint()`), or a fresh `Progress`
    and {} when there is none; rank 0 logs where the run continues."""
    if checkpoint is None:
        return Progress(), {}
    with checkpoint.as_directory() as d:
        progress, state = restore(d, model=model, optimizer=optimizer, scheduler=scheduler, map_location=map_location)
    if rank == 0:
        log.info("resuming after epoch %d (step %d, %.0f s trained)", progress.epoch, progress.step, progress.elapsed_before)
    return progress, state
