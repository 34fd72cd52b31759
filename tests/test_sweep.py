"""jobs/sweep.py: the results table and plots on hand-made trials, config errors, and real Ray Tune
sweeps of the tiny Gloss2Text recipe (each trial a Ray Train run), one of them killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _translation_helpers import write_tiny_corpus

from common.config import ConfigError, load_config
from jobs.sweep import PlotSpec, SweepConfig, plot_rows, results_markdown, run, trial_overrides, trial_row

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs/sweeps/tiny_translation.yaml"


def sweep_config(tmp_path: Path, *overrides: str) -> SweepConfig:
    return load_config(SweepConfig, SHIPPED, [f"out_dir={tmp_path / 'sweeps'}", *overrides])


def test_trial_overrides_put_values_as_yaml_and_the_run_in_the_sweep(tmp_path):
    cfg = sweep_config(tmp_path)
    got = trial_overrides(cfg, {"optim.lr": 0.002, "data.src_lang": "de_DE", "x.list": [1, 2]}, "trial_ab_00001")
    assert got == ["final_eval=false", "optim.lr=0.002", 'data.src_lang="de_DE"', "x.list=[1, 2]",
                   "name=trial_ab_00001", f"out_dir={tmp_path.resolve() / 'sweeps' / 'tiny_translation_lr' / 'trials'}"]


def test_derived_keys_come_from_the_sweeps_own_variables(tmp_path):
    """demo_threshold.yaml: `threshold` is not a recognition key; each trial gets its relabel file."""
    cfg = load_config(SweepConfig, REPO / "configs/sweeps/demo_threshold.yaml", [f"out_dir={tmp_path}"])
    assert cfg.sweep_variables() == {"threshold"}
    got = trial_overrides(cfg, {"threshold": 0.1}, "trial_x")
    assert got[:-2] == [*cfg.overrides, 'data.auxiliary.sgsl_b.relabel="outputs/demo/mapping/sgsl-b_class/relabelled_t0.10.jsonl"']
    assert 'data.auxiliary.sgsl_b.relabel="outputs/demo/mapping/sgsl-b_class/relabelled_t1.00.jsonl"' in trial_overrides(cfg, {"threshold": 1}, "t")
    with pytest.raises(ConfigError, match=r"derived.data.x: \{alpha\} is not a swept key without dots"):
        load_config(SweepConfig, SHIPPED, ["derived={data.x: 'f_{alpha}'}"])
    with pytest.raises(ConfigError, match=r"derived.data.x: \{optim.lr\} is not a swept key without dots"):
        load_config(SweepConfig, SHIPPED, ["derived={data.x: 'f_{optim.lr}'}"])


@pytest.mark.parametrize("path", sorted((REPO / "configs/sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_trial_of_the_shipped_sweeps_is_a_valid_recipe_config(path):
    from jobs.sweep import recipe

    cfg = load_config(SweepConfig, path)
    schema, _ = recipe(cfg.recipe)
    combos = [{}]
    for key, values in cfg.search.grid.items():
        combos = [{**c, key: v} for c in combos for v in values]
    for params in combos:
        load_config(schema, REPO / cfg.config, trial_overrides(cfg, params, "trial_x"))
    if path.stem.startswith("demo_"):  # the cross-lingual paper's grids
        grids = {"demo_alpha": {"data.alpha": [0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8]},
                 "demo_alpha_seeds": {"data.alpha": [0, 0.2], "train.seed": [1, 2]},  # seed 0: demo_alpha's
                 "demo_threshold": {"threshold": [0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0]}}
        assert cfg.search.grid == grids[path.stem]
        run_cfg = load_config(schema, REPO / cfg.config, trial_overrides(cfg, combos[1], "trial_x"))
        assert run_cfg.data.primary_fraction == 0.2 and run_cfg.data.auxiliary["sgsl_b"].relabel
        if path.stem == "demo_alpha_seeds":  # the same trials as demo_alpha's but the seed
            base = load_config(SweepConfig, REPO / "configs/sweeps/demo_alpha.yaml")
            assert (cfg.config, cfg.overrides, cfg.scheduler) == (base.config, base.overrides, base.scheduler)


def test_rows_table_and_plot_on_hand_made_trials(tmp_path):
    cfg = sweep_config(tmp_path, "columns=[best_epoch,best_dev.dev_rouge]")
    reports = [{"epoch": 1, "dev_bleu4": 3.0}, {"epoch": 2, "dev_bleu4": 7.5}, {"epoch": 3, "dev_bleu4": 6.0}]
    finished = trial_row(cfg, {"optim.lr": 0.002}, reports, {"best_epoch": 2, "best_dev": {"dev_rouge": 30.25}, "wall_s": 9.0}, None)
    assert finished == {"optim.lr": 0.002, "status": "finished", "epochs": 3, "best_dev_bleu4": 7.5,
                        "best_epoch": 2, "best_dev.dev_rouge": 30.25}
    stopped = trial_row(cfg, {"optim.lr": 0.005}, reports[:1], None, None)
    assert stopped["status"] == "stopped early" and stopped["best_dev_bleu4"] == 3.0 and stopped["best_epoch"] is None
    failed = trial_row(cfg, {"optim.lr": 0.01}, [], None, "ValueError('boom')")
    assert failed["status"] == "error" and failed["best_dev_bleu4"] is None and failed["error"] == "ValueError('boom')"

    table = results_markdown(cfg, [stopped, failed, finished])
    assert table.splitlines()[2:] == [
        "| optim.lr | status | epochs | best_dev_bleu4 | best_epoch | best_dev.dev_rouge |",
        "|---|---|---|---|---|---|",
        "| 0.002 | finished | 3 | 7.5 | 2 | 30.25 |",  # mode max: the best first, no metric last
        "| 0.005 | stopped early | 1 | 3 | – | – |",
        "| 0.01 | error | 0 | – | – | – |",
    ]
    png = tmp_path / "plot.png"
    plot_rows([finished, stopped, failed], PlotSpec(x="optim.lr", y=["best_dev_bleu4", "best_dev.dev_rouge"]), png, "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown 'nope'"):
        sweep_config(tmp_path, "recipe=nope")
    with pytest.raises(ConfigError, match="x 'optim.warmup_steps' is not a swept key"):
        sweep_config(tmp_path, "plots=[{x: optim.warmup_steps, y: [best_dev_bleu4]}]")
    data = sweep_config(tmp_path).model_dump()
    with pytest.raises(ValueError, match="no key to sweep"):
        SweepConfig.model_validate({**data, "search": {}})
    with pytest.raises(ValueError, match="ensemble: decodes translation checkpoints; recipe 'recognition' has none"):
        SweepConfig.model_validate({**data, "recipe": "recognition", "ensemble": True})


def _toy_overrides(files: dict[str, str]) -> str:
    keys = [f"data.corpus.files.train={files['train']}", f"data.corpus.files.dev={files['dev']}", "data.train_limit=null",
            "data.dev_limit=null", "train.batch_tokens=160", "final_eval=false"]
    return "overrides=[" + ",".join(keys) + "]"


def test_a_two_trial_sweep_runs_each_trial_through_the_recipe(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = write_tiny_corpus(tmp_path / "data")
    cfg = sweep_config(tmp_path, _toy_overrides(files), "scheduler.grace_period=2", "ensemble=true")
    result = run(cfg)
    rows = {r["optim.lr"]: r for r in result["rows"]}
    assert sorted(rows) == [0.002, 0.005] and all(r["status"] == "finished" and r["epochs"] == 2 for r in rows.values())
    for row in rows.values():  # the row's values are the trial's own run: its config and its summary
        run_dir = cfg.sweep_dir / "trials" / f"trial_{row['trial']}"
        assert f"lr: {row['optim.lr']}" in (run_dir / "config.yaml").read_text()
        summary = json.loads((run_dir / "best_checkpoint.json").read_text())
        assert row["best_dev.dev_bleu4"] == summary["best_dev"]["dev_bleu4"] == row["best_dev_bleu4"]
        assert [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((cfg.sweep_dir / "results.json").read_text()) == result["rows"]
    assert (cfg.sweep_dir / "optim-lr_best_dev_bleu4.png").read_bytes()[:4] == b"\x89PNG"
    # ensemble: true decodes dev with both trials' best checkpoints together, as evaluate --checkpoint A B does
    from training.evaluation import evaluate_gloss2text

    trials = sorted(str(cfg.sweep_dir / "trials" / f"trial_{r['trial']}") for r in result["rows"])
    ensemble = json.loads((cfg.sweep_dir / "ensemble_dev" / "scores.json").read_text())
    assert result["ensemble"]["trials"] == trials and len(ensemble["checkpoint"]) == 2
    by_hand = evaluate_gloss2text(trials, out_dir=tmp_path / "by_hand")
    assert by_hand["scores"] == ensemble["scores"] and by_hand["checkpoint"] == ensemble["checkpoint"]
    assert (tmp_path / "by_hand" / "hypotheses.txt").read_text() == (cfg.sweep_dir / "ensemble_dev" / "hypotheses.txt").read_text()
    assert "Ensemble of the 2 finished trials' best checkpoints, dev: bleu1" in (cfg.sweep_dir / "results.md").read_text()


def test_a_killed_sweep_resumes_with_tunes_restore(tmp_path):
    """SIGKILL the sweep once its first trial has finished; the same command again restores the Tune
    experiment: the finished trial is not run again and the other one completes."""
    files = write_tiny_corpus(tmp_path / "data")
    command = [sys.executable, "jobs/sweep.py", "--config", str(SHIPPED), f"out_dir={tmp_path / 'sweeps'}",
               _toy_overrides(files), "scheduler.kind=fifo"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    trials = tmp_path / "sweeps" / "tiny_translation_lr" / "trials"
    proc = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not any((p / "best_checkpoint.json").exists() for p in trials.glob("trial_*")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        time.sleep(2.0)  # into the second trial
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = [p for p in trials.glob("trial_*") if (p / "best_checkpoint.json").exists()]
    assert len(done) == 1, "no trial finished within 300 s"
    first_log = (done[0] / "metrics.jsonl").read_text()

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = json.loads(again.stdout.strip().splitlines()[-1])["rows"]
    assert sorted(r["optim.lr"] for r in rows) == [0.002, 0.005] and all(r["status"] == "finished" for r in rows)
    assert (done[0] / "metrics.jsonl").read_text() == first_log  # the finished trial was not run again
    assert len(list(trials.glob("trial_*"))) == 2


def test_the_trial_drivers_of_a_local_sweep_take_no_cpu_from_ray_data():
    from jobs.sweep import local_cpus
    from jobs.train_recognition import RecognitionConfig

    cfg = load_config(SweepConfig, REPO / "configs/sweeps/demo_alpha.yaml")
    scaling = load_config(RecognitionConfig, REPO / cfg.config).scaling  # 2 workers x 0.5 CPU
    workers = scaling.num_workers * scaling.cpus_per_worker
    # 2 - 1.0 - 0.01 = 0.99 hung the first demo trial: its read tasks ask for 1 CPU
    for trials in (1, 2, 3):
        cores = 2 * trials
        sweep = cfg.model_copy(update={"max_concurrent_trials": trials})
        left_for_data = local_cpus(sweep, cores) - trials * (workers + cfg.trial_cpus)
        assert left_for_data >= cores - trials * workers  # what the workers leave, as in a run outside a sweep
    assert local_cpus(cfg, 2) == 3 and local_cpus(cfg.model_copy(update={"trial_cpus": 1.5, "max_concurrent_trials": 2}), 4) == 8
