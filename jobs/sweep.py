"""Ray Tune sweep over any config keys of a recipe: each trial is the recipe's own `run(cfg)` (a Ray
Train run), an ASHA scheduler stops poor trials early, a concurrency limit keeps the cluster's
share, and a killed sweep resumes where it stopped.

    python jobs/sweep.py --config configs/sweeps/<name>.yaml [key=value ...]

The sweep config names the recipe (`recipe`), its config file and overrides, the search space
(`search.grid` lists every value; `choice`, `uniform`, `loguniform` are sampled `num_samples`
times; `derived` sets recipe keys from templates over the swept values, e.g. a file per threshold), the per-epoch metric Tune schedules on (a key the recipe reports each epoch, e.g.
`dev_wer`) and the summary values the results table shows. Outputs in `<out_dir>/<name>/`:
Tune's experiment folder (restored on a re-run: finished trials are kept, unfinished ones resume
from their latest Ray Train checkpoint), `trials/<trial>/` the recipe's run folders,
`results.md` / `results.json` (one row per trial) and one PNG per `plots` entry. With `ensemble: true`
(translation recipe) the finished trials' best checkpoints are decoded together as an ensemble on
the dev split (`ensemble_dev/`): a sweep over seeds, run side by side, gives a seed ensemble.
"""

from __future__ import annotations

import json
import logging
import math
import os
import string
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, model_validator

from common.config import StrictModel, load_config, save_config
from common.files import atomic_write_json, atomic_write_text, atomic_write_with
from training.checkpoint import BEST_FILE
from training.cli import recipe_main
from training.ray_train import reporting_to_tune

log = logging.getLogger("sweep")

RECIPES = ("recognition", "translation")


def recipe(name: str) -> tuple[type[BaseModel], Callable[[Any], dict]]:
    """(config schema, run) of a recipe job. The sweep is an orchestrator: the one kind of job that
    imports recipe jobs (tests/test_layering.py)."""
    if name == "recognition":
        from jobs.train_recognition import RecognitionConfig, run

        return RecognitionConfig, run
    if name == "translation":
        from jobs.train_translation import TranslationConfig, run

        return TranslationConfig, run
    raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")


class SearchSection(StrictModel):
    grid: dict[str, list[Any]] = {}  # every value of each key, all combinations
    choice: dict[str, list[Any]] = {}  # sampled uniformly, `num_samples` times
    uniform: dict[str, tuple[float, float]] = {}
    loguniform: dict[str, tuple[float, float]] = {}

    def keys(self) -> list[str]:
        return [*self.grid, *self.choice, *self.uniform, *self.loguniform]


class SchedulerSection(StrictModel):
    kind: Literal["asha", "fifo"] = "asha"
    max_t: int = Field(1000, ge=1)  # epochs; the recipe's own epoch budget usually ends a trial first
    grace_period: int = Field(1, ge=1)  # epochs every trial runs before ASHA may stop it
    reduction_factor: float = Field(3.0, gt=1)


class PlotSpec(StrictModel):
    x: str  # a swept key
    y: list[str] = Field(min_length=1, max_length=2)  # row values: `best_<metric>` or summary keys; the second on a right axis


class SweepConfig(StrictModel):
    name: str
    out_dir: str = "outputs/sweeps"
    recipe: str
    config: str  # the recipe's config file
    overrides: list[str] = []  # key=value applied to it before each trial's values
    # recipe keys set from each trial's values: Python format strings over the swept keys, e.g.
    # {"data.auxiliary.sgsl_b.relabel": "outputs/mapping/relabelled_t{threshold:.2f}.jsonl"}. A swept key
    # named in a template is the sweep's own variable (e.g. the threshold of the job that wrote those
    # files; a plain name, no dot) and is not passed to the recipe itself.
    derived: dict[str, str] = {}
    search: SearchSection
    num_samples: int = Field(1, ge=1)  # repeats of the grid (with fresh samples of the random keys)
    metric: str  # reported by the recipe every epoch
    mode: Literal["min", "max"]
    scheduler: SchedulerSection = SchedulerSection()
    max_concurrent_trials: int = Field(1, ge=1)
    trial_cpus: float = Field(0.01, gt=0)  # the trial's driver only; its Ray Train workers ask for their own
    columns: list[str] = []  # summary values shown per trial (nested keys with '.')
    plots: list[PlotSpec] = []
    # translation recipe: after the trials, decode the recipe's dev split with the ensemble of every
    # finished trial's best checkpoint (e.g. a sweep over seeds) into `ensemble_dev/`
    ensemble: bool = False

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe: unknown {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.ensemble and self.recipe != "translation":
            raise ValueError(f"ensemble: decodes translation checkpoints; recipe {self.recipe!r} has none")
        if not self.search.keys():
            raise ValueError("search: no key to sweep (give search.grid, choice, uniform or loguniform)")
        swept = self.search.keys()
        for plot in self.plots:
            if plot.x not in swept:
                raise ValueError(f"plots: x {plot.x!r} is not a swept key ({', '.join(swept)})")
        for key, template in self.derived.items():
            for field in template_fields(template):
                if field not in swept or "." in field:
                    raise ValueError(f"derived.{key}: {{{field}}} is not a swept key without dots ({', '.join(swept)})")
        return self

    def sweep_variables(self) -> set[str]:
        """Swept keys used by `derived` templates only: not recipe keys."""
        return {f for template in self.derived.values() for f in template_fields(template)}

    @property
    def sweep_dir(self) -> Path:
        return Path(self.out_dir).resolve() / self.name


def param_space(search: SearchSection) -> dict[str, Any]:
    """Tune's search space, flat with the dotted config keys."""
    from ray import tune

    return {**{k: tune.grid_search(list(v)) for k, v in search.grid.items()},
            **{k: tune.choice(list(v)) for k, v in search.choice.items()},
            **{k: tune.uniform(*v) for k, v in search.uniform.items()},
            **{k: tune.loguniform(*v) for k, v in search.loguniform.items()}}


def template_fields(template: str) -> set[str]:
    """The field names of a format string ("{t:.2f}" -> {"t"})."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def trial_overrides(cfg: SweepConfig, params: dict[str, Any], run_name: str) -> list[str]:
    """The recipe overrides of one trial: the sweep's, the trial's values (as JSON, which is YAML)
    but the sweep's own variables, the `derived` keys, and where its run goes."""
    own = cfg.sweep_variables()
    return [*cfg.overrides, *(f"{k}={json.dumps(v)}" for k, v in params.items() if k not in own),
            *(f"{k}={json.dumps(t.format_map(params))}" for k, t in cfg.derived.items()),
            f"name={run_name}", f"out_dir={cfg.sweep_dir / 'trials'}"]


def run_trial(params: dict[str, Any], cfg_json: dict, workdir: str) -> None:
    """One Tune trial: the recipe's `run(cfg)` with this trial's values; its Ray Train reports
    reach Tune. Runs on a Tune worker, so it takes the sweep config as plain JSON, and works in the
    sweep's directory (Tune starts trials in their own folders; the configs' paths are relative)."""
    import os

    from ray import tune

    os.chdir(workdir)
    cfg = SweepConfig.model_validate(cfg_json)
    schema, run = recipe(cfg.recipe)
    run_cfg = load_config(schema, cfg.config, trial_overrides(cfg, params, trial_run_name(tune.get_context().get_trial_id())))
    with reporting_to_tune():
        run(run_cfg)


def trial_run_name(trial_id: str) -> str:
    return f"trial_{trial_id}"


def lookup(row: dict, key: str) -> Any:
    """`row["a"]["b"]` for key "a.b"; None where absent."""
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def trial_row(cfg: SweepConfig, params: dict, reports: list[dict], summary: dict | None, error: str | None) -> dict:
    """One results row: the trial's values, status, epochs reported, the best per-epoch metric and
    the summary columns."""
    values = [r[cfg.metric] for r in reports if isinstance(r.get(cfg.metric), (int, float))]
    best = (min if cfg.mode == "min" else max)(values) if values else None
    status = "error" if error else "finished" if summary and summary.get("wall_s") is not None else "stopped early"
    row = {**{k: params.get(k) for k in cfg.search.keys()}, "status": status,
           "epochs": max((r.get("epoch", 0) for r in reports), default=0), f"best_{cfg.metric}": best}
    row.update({c: lookup(summary or {}, c) for c in cfg.columns})
    if error:
        row["error"] = error
    return row


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def results_markdown(cfg: SweepConfig, rows: list[dict]) -> str:
    """The results table, best trial first (rows without the metric last)."""
    key = f"best_{cfg.metric}"
    sign = 1 if cfg.mode == "min" else -1
    rows = sorted(rows, key=lambda r: (r[key] is None, sign * r[key] if r[key] is not None else 0))
    columns = [*cfg.search.keys(), "status", "epochs", key, *cfg.columns]
    lines = [f"# Sweep {cfg.name}: {cfg.recipe} ({cfg.config}), {cfg.metric} ({cfg.mode})", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_rows(rows: list[dict], spec: PlotSpec, path: Path, title: str) -> None:
    """`spec.y` against `spec.x`: every trial as a point, the mean over trials of equal x (e.g.
    seeds) as a line; a second y on the right axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    axes = [ax, ax.twinx()] if len(spec.y) == 2 else [ax]
    for axis, y, colour in zip(axes, spec.y, ("tab:blue", "tab:orange")):
        points = [(r[spec.x], lookup(r, y)) for r in rows if isinstance(r.get(spec.x), (int, float))]
        points = [(x, v) for x, v in points if isinstance(v, (int, float)) and math.isfinite(v)]
        xs = sorted({x for x, _ in points})
        means = [sum(v for x2, v in points if x2 == x) / sum(1 for x2, _ in points if x2 == x) for x in xs]
        axis.scatter([x for x, _ in points], [v for _, v in points], color=colour, alpha=0.5, s=16)
        axis.plot(xs, means, color=colour, marker="o", label=y)
        axis.set_ylabel(y, color=colour)
    ax.set_xlabel(spec.x)
    ax.set_title(title)
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)


def collect_rows(cfg: SweepConfig, grid) -> list[dict]:
    """Rows of every trial of a Tune ResultGrid: values from Tune, the summary from the trial's run
    folder (written when the recipe's run finished)."""
    rows = []
    for result in grid:
        frame = result.metrics_dataframe
        reports = frame.to_dict("records") if frame is not None else []
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.removeprefix("trial_")
        summary_path = cfg.sweep_dir / "trials" / trial_run_name(trial_id) / BEST_FILE
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        params = {k: result.config.get(k) for k in cfg.search.keys()}
        rows.append({"trial": trial_id, **trial_row(cfg, params, reports, summary, repr(result.error) if result.error else None)})
    return rows


def ensemble_of_trials(cfg: SweepConfig, rows: list[dict]) -> dict | None:
    """Decode the recipe's dev split with the ensemble of the finished trials' best checkpoints
    (`training.evaluation.evaluate_gloss2text`, the recipe's decoding settings) into
    `<sweep>/ensemble_dev/`; its summary, or None when no trial finished."""
    from training.evaluation import evaluate_gloss2text

    runs = sorted(str(cfg.sweep_dir / "trials" / trial_run_name(r["trial"])) for r in rows if r["status"] == "finished")
    if not runs:
        log.warning("sweep %s: no finished trial to ensemble", cfg.name)
        return None
    summary = {**evaluate_gloss2text(runs, out_dir=cfg.sweep_dir / "ensemble_dev"), "trials": runs}
    log.info("ensemble of %d trials: dev %s", len(runs), summary["scores"])
    return summary


def make_tuner(cfg: SweepConfig):
    """A new Tuner, or the stored one restored (finished trials kept, the rest resumed)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    trainable = tune.with_resources(tune.with_parameters(run_trial, cfg_json=cfg.model_dump(mode="json"), workdir=str(Path.cwd())),
                                    {"cpu": cfg.trial_cpus})
    experiment = cfg.sweep_dir / "tune"
    if tune.Tuner.can_restore(str(experiment)):
        log.info("restoring the sweep from %s", experiment)
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=cfg.scheduler.max_t, grace_period=cfg.scheduler.grace_period,
                               reduction_factor=cfg.scheduler.reduction_factor)
                 if cfg.scheduler.kind == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable,
        param_space=param_space(cfg.search),
        tune_config=tune.TuneConfig(metric=cfg.metric, mode=cfg.mode, scheduler=scheduler, num_samples=cfg.num_samples,
                                    max_concurrent_trials=cfg.max_concurrent_trials,
                                    trial_dirname_creator=lambda t: trial_run_name(t.trial_id)),
        run_config=tune.RunConfig(name="tune", storage_path=str(cfg.sweep_dir)),
    )


def local_cpus(cfg: SweepConfig, cores: int) -> int:
    """Logical CPUs of a local Ray instance for the sweep: the machine's cores plus, per concurrent
    trial, its driver's share rounded up to a whole CPU. A driver mostly waits on its Ray Train
    workers; without the extra CPU a trial whose workers take whole cores (2 x 0.5 on 2 cores)
    leaves Ray Data 0.99 CPU, and its read tasks, which ask for 1, never start."""
    return cores + cfg.max_concurrent_trials * math.ceil(cfg.trial_cpus)


def run(cfg: SweepConfig) -> dict:
    """Run (or resume) the sweep; write the results table and plots. Returns {"rows", "files"}."""
    from training.ray_cluster import init_ray

    recipe(cfg.recipe)  # an unknown recipe fails before Ray starts
    cfg.sweep_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.sweep_dir / "sweep.yaml")
    init_ray(job_priority=True, num_cpus=local_cpus(cfg, len(os.sched_getaffinity(0))))
    grid = make_tuner(cfg).fit()
    rows = collect_rows(cfg, grid)
    ensemble = ensemble_of_trials(cfg, rows) if cfg.ensemble else None
    files = [cfg.sweep_dir / "results.md", cfg.sweep_dir / "results.json"]
    table = results_markdown(cfg, rows)
    if ensemble is not None:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in ensemble["scores"].items())
        table += f"\nEnsemble of the {len(ensemble['trials'])} finished trials' best checkpoints, dev: {scores} (`ensemble_dev/`)\n"
    atomic_write_text(files[0], table)
    atomic_write_json(files[1], rows)
    for spec in cfg.plots:
        path = cfg.sweep_dir / f"{'_'.join([spec.x, *spec.y]).replace('.', '-')}.png"
        plot_rows(rows, spec, path, f"{cfg.name}: {', '.join(spec.y)} against {spec.x}")
        files.append(path)
    log.info("sweep %s: %d trials, table %s", cfg.name, len(rows), files[0])
    return {"rows": rows, "files": [str(f) for f in files], **({"ensemble": ensemble} if ensemble is not None else {})}


def main(argv: list[str] | None = None) -> dict:
    return recipe_main(SweepConfig, run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
