"""Learning-rate schedules and the time budget that plans them.

`lr_factor` is the multiplier of the base learning rate at an optimizer step; `EpochBudget`
decides, before each epoch, how many epochs the run will have in all, so that a run under
`max_minutes` anneals its cosine schedule to the end of the budget instead of being cut off.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Callable, Iterator, Literal

import torch

if TYPE_CHECKING:
    from training.state import Progress

log = logging.getLogger(__name__)

Schedule = Literal["cosine", "inverse_sqrt", "constant"]


def lr_factor(step: int, total_steps: int, *, warmup_steps: int = 0, schedule: Schedule = "cosine",
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based): linear warm-up over
    `warmup_steps` ((step + 1) / warmup_steps), then cosine from 1 to `min_lr_ratio` at
    `total_steps`, inverse square root (sqrt(warmup_steps / (step + 1))), or constant 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(1, warmup_steps) / (step + 1))
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_lr_scheduler(optimizer: torch.optim.Optimizer, total_steps: Callable[[], int], *, warmup_steps: int = 0,
                      schedule: Schedule = "cosine", min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `lr_factor`; `total_steps()` is read at every step, so a time budget can
    re-plan the schedule's length as the run goes (`EpochBudget.total_steps`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, total_steps(), warmup_steps=warmup_steps, schedule=schedule, min_lr_ratio=min_lr_ratio))


class EpochBudget:
    """Plans the number of epochs of a run from a wall-clock budget.

    `plan(epoch, history, elapsed_s)` is called before each epoch (0-based `epoch`; `history` the
    metrics of the finished epochs, each with the cumulative `elapsed_s` in seconds). Without a
    budget it returns `max_epochs`. With one, it fits as many epochs as the mean of the last three
    epoch times allows into what is left, capped at `max_epochs`; it returns `epoch` itself (no
    epoch left) when even the next one would pass the budget. `epochs(progress)` runs that plan:
    it yields the epochs to train, and `planned` / `total_steps()` follow it.
    """

    def __init__(self, max_epochs: int, max_minutes: float | None, steps_per_epoch: int = 1):
        self.max_epochs = max_epochs
        self.max_minutes = max_minutes
        self.steps_per_epoch = steps_per_epoch
        self.planned = max_epochs

    def total_steps(self) -> int:
        """Optimizer steps of the whole run as planned now."""
        return self.planned * self.steps_per_epoch

    def epochs(self, progress: "Progress") -> Iterator[int]:
        """The 0-based epochs still to train after `progress.epoch`, while they fit the budget (the
        same on every rank: rank 0 decides). Starts `progress`'s clock."""
        progress.started = time.time()
        for epoch in range(progress.epoch, self.max_epochs):
            planned = self.plan_for_all_ranks(epoch, progress.history, progress.elapsed_s())
            if planned is None:
                return
            self.planned = planned
            yield epoch

    def plan(self, epoch: int, history: list[dict], elapsed_s: float) -> int:
        if not self.max_minutes or not history:
            return self.max_epochs
        fit = int((self.max_minutes * 60 - elapsed_s) // max(self.seconds_per_epoch(history), 1e-6))
        return min(self.max_epochs, epoch + fit)

    def seconds_per_epoch(self, history: list[dict]) -> float:
        """Mean of the last three epochs' durations (s), for log messages."""
        ends = [0.0] + [h["elapsed_s"] for h in history]
        recent = [b - a for a, b in zip(ends[:-1], ends[1:])][-3:]
        return sum(recent) / max(1, len(recent))

    def plan_for_all_ranks(self, epoch: int, history: list[dict], elapsed_s: float) -> int | None:
        """`plan` as rank 0 computes it, on every rank (they must agree); None, with a warning on
        rank 0, when the next epoch would pass the budget."""
        from training.distributed import from_rank0, rank_and_world

        planned = from_rank0(self.plan(epoch, history, elapsed_s))
        if planned > epoch:
            return planned
        if rank_and_world()[0] == 0:
            log.warning("stopping before epoch %d: another epoch (%.0f s) would pass max_minutes=%s",
                        epoch + 1, self.seconds_per_epoch(history), self.max_minutes)
        return None
