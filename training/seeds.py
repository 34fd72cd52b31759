"""A recipe run over several seeds, reported as mean and spread: how much of a difference between
two settings is run-to-run noise.

`run_seeds(run, cfg, seeds)` calls the recipe's `run(cfg)` once per seed, with `train.seed` set and
the run named `<name>_seed<k>` (so each seed's run resumes on its own), and aggregates every
numeric value of the summaries (nested dicts flattened with '.'): mean, sample standard deviation,
min, max. The aggregate goes to `<out_dir>/<name>_seeds.json` and a Markdown table beside it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from common.files import atomic_write_json, atomic_write_text


def flatten_numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """{"a": 1, "b": {"c": 2.5}, "d": "x"} -> {"a": 1.0, "b.c": 2.5}: the numeric leaves (no bools)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def aggregate(summaries: list[dict]) -> dict[str, dict[str, float]]:
    """Per numeric key present in every summary: mean, std (sample; 0 for one run), min, max."""
    flat = [flatten_numbers(s) for s in summaries]
    keys = [k for k in flat[0] if all(k in f for f in flat[1:])]
    return {k: {"mean": statistics.fmean(f[k] for f in flat),
                "std": statistics.stdev([f[k] for f in flat]) if len(flat) > 1 else 0.0,
                "min": min(f[k] for f in flat), "max": max(f[k] for f in flat)} for k in keys}


def run_seeds(run: Callable[[Any], dict], cfg: BaseModel, seeds: list[int], report: tuple[str, ...] = ()) -> dict:
    """Run `run(cfg)` once per seed (see the module docstring). `report`: the keys the Markdown
    table shows (default: every aggregated key). Returns {"seeds", "runs", "aggregate", "files"}."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    runs = []
    for seed in seeds:
        seeded = cfg.model_copy(deep=True)
        seeded.train.seed = seed
        seeded.name = f"{cfg.name}_seed{seed}"
        runs.append(run(seeded))
    agg = aggregate(runs)
    base = Path(cfg.out_dir) / f"{cfg.name}_seeds"
    shown = [k for k in (report or agg) if k in agg]
    table = "| value | mean | std | min | max |\n|---|---|---|---|---|\n" + "".join(
        f"| {k} | {agg[k]['mean']:.4g} | {agg[k]['std']:.3g} | {agg[k]['min']:.4g} | {agg[k]['max']:.4g} |\n" for k in shown)
    atomic_write_text(base.with_suffix(".md"), f"# {cfg.name} over seeds {seeds}\n\n{table}")
    result = {"seeds": seeds, "runs": runs, "aggregate": agg, "files": [str(base.with_suffix(".json")), str(base.with_suffix(".md"))]}
    atomic_write_json(base.with_suffix(".json"), result)
    return result
