"""Running a recipe's worker loop on Ray Train: scaling settings, `fit` (start or resume a run and
pick its best checkpoint), and `report_epoch` (metrics + checkpoint from every worker).

Ray keeps the `num_to_keep` best checkpoints by the recipe's metric and always the latest;
re-running the same run (same name and storage path) resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from common.config import StrictModel
from common.files import atomic_write_json
from training.checkpoint import BEST_FILE, METRICS_FILE

log = logging.getLogger(__name__)

_report_to_tune = False


@contextlib.contextmanager
def reporting_to_tune():
    """Inside a Ray Tune trial (jobs/sweep.py): every `fit` in this block forwards its workers'
    epoch reports to Tune, so a Tune scheduler (ASHA) sees each epoch and can stop the run."""
    global _report_to_tune
    before, _report_to_tune = _report_to_tune, True
    try:
        yield
    finally:
        _report_to_tune = before


class ScalingSection(StrictModel):
    """Workers of a Ray Train run (one per GPU on GPU clusters)."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, ge=0)  # leave CPUs for Ray Data on small machines
    max_failures: int = Field(0, ge=-1)  # worker-group restarts from the latest checkpoint (-1: unlimited)
    num_to_keep: int = Field(2, ge=1)  # checkpoints kept by the recipe's metric (the latest is always kept too)


@dataclass
class FitResult:
    best_checkpoint: Path
    best_metrics: dict  # the best checkpoint's metrics.json
    return_value: Any  # what the worker loop of rank 0 returned

    def summary(self, run_dir: str | Path, started: float) -> dict:
        """The part of a run's summary every recipe has: run dir, best checkpoint and epoch, the
        epochs this call trained, seconds since `started` (time.time())."""
        return {"run_dir": str(run_dir), "best_checkpoint": str(self.best_checkpoint), "best_epoch": self.best_metrics["epoch"],
                "epochs_run": (self.return_value or {}).get("epochs_run"), "train_s": time.time() - started}


def fit(train_loop: Callable[[dict], Any], loop_config: dict, *, name: str, storage_path: str, scaling: ScalingSection,
        metric: str, mode: Literal["min", "max"], datasets: Callable[[], dict] | None = None,
        split_datasets: tuple[str, ...] = ()) -> FitResult:
    """Run `train_loop(loop_config)` on `scaling.num_workers` Ray Train workers (starting or joining
    Ray first), keeping checkpoints by `metric` (`mode`). `datasets()` makes the Ray Datasets once
    Ray is up (made before, they would start a Ray of their own, without the training settings of
    `init_ray`); `split_datasets` are sharded across workers, the others given whole to each."""
    import json

    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.ray_cluster import init_ray

    init_ray(job_priority=True)
    datasets = datasets() if datasets is not None else None
    callbacks = []
    if _report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker={"CPU": scaling.cpus_per_worker}),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=list(split_datasets)) if datasets else None,
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=scaling.num_to_keep, checkpoint_score_attribute=metric,
                                               checkpoint_score_order=mode),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    best = result.get_best_checkpoint(metric, mode)
    if best is None:
        raise RuntimeError(f"{Path(storage_path) / name}: training reported no checkpoint")
    best_metrics = json.loads((Path(best.path) / METRICS_FILE).read_text())
    return FitResult(Path(best.path), best_metrics, result.return_value)


def report_epoch(metrics: dict, *, rank: int, save: Callable[[Path], None]) -> None:
    """Report an epoch from every worker: rank 0 writes its checkpoint with `save(folder)` (see
    training.checkpoint.write_checkpoint) and hands it to Ray with the metrics; other ranks report
    the metrics alone."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="signbridge_ckpt_") as tmp:
        save(Path(tmp))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def finished_summary(run_dir: str | Path, config: BaseModel) -> dict | None:
    """The summary of the run in `run_dir` if it ran `config` exactly (its `config.yaml`, read with
    `config`'s schema: keys added since, with their defaults, do not tell them apart) to its end (the
    summary has `wall_s`, which every recipe writes last), else None."""
    import json

    import yaml
    from pydantic import ValidationError

    summary_path, config_path = Path(run_dir) / BEST_FILE, Path(run_dir) / "config.yaml"
    if not (summary_path.exists() and config_path.exists()):
        return None
    summary = json.loads(summary_path.read_text())
    try:
        saved = type(config).model_validate(yaml.safe_load(config_path.read_text()))
    except ValidationError:
        return None  # a run of a config this schema no longer reads
    same = saved.model_dump(mode="json") == config.model_dump(mode="json")
    return summary if same and "wall_s" in summary else None


def write_summary(run_dir: str | Path, summary: dict) -> dict:
    """`<run_dir>/best_checkpoint.json`: the run's summary, which names its best checkpoint
    (training.checkpoint.resolve_checkpoint reads it). Returns `summary`."""
    atomic_write_json(Path(run_dir) / BEST_FILE, summary)
    return summary
