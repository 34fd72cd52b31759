"""The training library's small parts: the time budget and LR schedule it plans, run logs
(metrics.jsonl, TensorBoard, PNG), atomic file writes, single-process distributed helpers."""

from __future__ import annotations

import json

import pytest
import torch

from common.files import atomic_directory, atomic_path, atomic_write_json, atomic_write_with
from training.distributed import all_mean, autocast, gather, rank_and_world, wrap_ddp
from training.run_log import CurveSpec, RunLog, read_scalars, tensorboard_tag
from training.schedule import EpochBudget, lr_factor, make_lr_scheduler
from training.state import Progress


def _history(*ends: float) -> list[dict]:
    return [{"epoch": i, "elapsed_s": e} for i, e in enumerate(ends, start=1)]


def test_budget_plans_the_epochs_that_fit_from_the_last_three_epoch_times():
    budget = EpochBudget(max_epochs=10, max_minutes=1.0, steps_per_epoch=4)
    assert budget.plan(0, [], 0.0) == 10  # nothing measured yet: the maximum
    # epochs took 20, 10, 10, 10 s -> the last three average 10 s; 60 - 50 s left -> 1 more epoch
    assert budget.plan(4, _history(20, 30, 40, 50), 50.0) == 5
    assert budget.plan(4, _history(20, 30, 40, 50), 55.0) == 4  # not even one: stop before epoch 5
    assert budget.plan(2, _history(5, 10), 10.0) == 10  # 50 s left at 5 s per epoch: capped at max_epochs
    assert EpochBudget(7, None).plan(3, _history(1, 2, 3), 1e9) == 7  # no budget
    assert budget.plan_for_all_ranks(4, _history(20, 30, 40, 50), 55.0) is None


def test_budget_epochs_drive_the_schedule_length():
    budget = EpochBudget(max_epochs=6, max_minutes=None, steps_per_epoch=4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_lr_scheduler(opt, budget.total_steps, warmup_steps=2)
    progress = Progress(epoch=2, step=8, history=_history(1, 2))  # resumed after epoch 2
    assert list(budget.epochs(progress)) == [2, 3, 4, 5] and budget.total_steps() == 24
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_factor(10, 24, warmup_steps=2))
    budget.planned = 4  # a tighter budget re-plans: the cosine now ends at step 16
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_factor(11, 16, warmup_steps=2))
    assert lr_factor(16, 16, warmup_steps=2) == pytest.approx(0.0)


def test_run_log_writes_jsonl_tensorboard_and_png_and_a_resumed_log_replaces_redone_epochs(tmp_path):
    curve = CurveSpec((("dev_wer", "dev WER"),), "dev WER (%)", (("train_loss", "train loss"),), "loss")
    history = [{"epoch": e, "dev_wer": 50.0 - e, "train_loss": 3.0 / e, "dev_head": "rgb", "wall_time": 1e9} for e in (1, 2, 3)]
    log = RunLog(tmp_path, curve)
    for e in range(1, 4):
        log.write(history[:e])
    log.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == history
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_scalars(tmp_path / "tensorboard", "dev/wer") == [(1, 49.0), (2, 48.0), (3, 47.0)]
    assert read_scalars(tmp_path / "tensorboard", "run/wall_time") == []  # not a curve
    # killed after logging epoch 3 but before its checkpoint: the resumed run redoes epoch 3
    again = RunLog(tmp_path, curve)
    again.write(history[:2] + [{**history[2], "dev_wer": 40.0}])
    again.close()
    assert read_scalars(tmp_path / "tensorboard", "dev/wer") == [(1, 49.0), (2, 48.0), (3, 40.0)]
    assert (tensorboard_tag("train_loss"), tensorboard_tag("dev_wer_rgb"), tensorboard_tag("lr")) == (
        "train/loss", "dev/wer_rgb", "run/lr")


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": "ü"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": "ü"}
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": "ü"} and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    atomic_write_with(tmp_path / "t.pt", lambda tmp: torch.save({"k": 1}, tmp))
    assert torch.load(tmp_path / "t.pt") == {"k": 1}
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(ValueError):
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "g").write_text("2")
            raise ValueError
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f"] and not (tmp_path / "d.tmp").exists()


def test_distributed_helpers_without_a_process_group():
    assert gather({"a": 1}) == [{"a": 1}] and rank_and_world() == (0, 1)
    assert all_mean(2.5, 4) == pytest.approx(2.5)
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model, 1) is model
    with autocast(torch.device("cpu")):
        assert model(torch.ones(1, 2)).dtype == torch.float32  # CPU trains in float32


def test_seeds_run_the_recipe_once_per_seed_and_report_mean_and_spread(tmp_path):
    from pydantic import BaseModel

    from training.seeds import flatten_numbers, run_seeds

    class Train(BaseModel):
        seed: int = 0

    class Cfg(BaseModel):
        name: str = "demo"
        out_dir: str = str(tmp_path)
        train: Train = Train()

    seen = []

    def run(cfg: Cfg) -> dict:
        seen.append((cfg.name, cfg.train.seed))
        return {"best_dev_wer": {0: 2.0, 1: 4.0, 2: 9.0}[cfg.train.seed], "best_dev": {"rgb": 1.0 * cfg.train.seed},
                "best_head": "rgb", "ok": True}

    cfg = Cfg()
    result = run_seeds(run, cfg, [0, 1, 2], report=("best_dev_wer",))
    assert seen == [("demo_seed0", 0), ("demo_seed1", 1), ("demo_seed2", 2)] and cfg.train.seed == 0  # the config is not changed
    agg = result["aggregate"]
    assert agg["best_dev_wer"] == {"mean": 5.0, "std": pytest.approx(3.6056, abs=1e-4), "min": 2.0, "max": 9.0}
    assert agg["best_dev.rgb"]["mean"] == 1.0 and "best_head" not in agg and "ok" not in agg
    assert json.loads((tmp_path / "demo_seeds.json").read_text())["aggregate"] == agg
    assert (tmp_path / "demo_seeds.md").read_text().splitlines()[-1] == "| best_dev_wer | 5 | 3.61 | 2 | 9 |"
    assert flatten_numbers({"a": 1, "b": {"c": float("nan"), "d": 2}}) == {"a": 1.0, "b.d": 2.0}
    with pytest.raises(ValueError, match="distinct"):
        run_seeds(run, cfg, [1, 1])

    from training.cli import recipe_main

    (tmp_path / "c.yaml").write_text(f"name: cli\nout_dir: {tmp_path}\n")
    seen.clear()
    out = recipe_main(Cfg, run, "test", ["--config", str(tmp_path / "c.yaml"), "train.seed=5", "--seeds", "1", "2"])
    assert seen == [("cli_seed1", 1), ("cli_seed2", 2)] and out["aggregate"]["best_dev_wer"]["mean"] == 6.5
    assert recipe_main(Cfg, run, "test", ["--config", str(tmp_path / "c.yaml"), "train.seed=2"])["best_dev_wer"] == 9.0


def test_fit_makes_the_datasets_once_ray_is_up(monkeypatch):
    """Ray Datasets made before `init_ray` would start a default Ray instance of their own (niced
    workers, none of the training settings): `fit` makes them after starting or joining Ray."""
    from training.ray_train import ScalingSection, fit

    calls = []
    monkeypatch.setattr("training.ray_cluster.init_ray", lambda **kw: calls.append(("init", kw)))

    def datasets():
        calls.append("datasets")
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        fit(lambda c: None, {}, name="x", storage_path="/tmp", scaling=ScalingSection(), metric="m", mode="min", datasets=datasets)
    assert calls == [("init", {"job_priority": True}), "datasets"]
