"""The command line every recipe shares: `--config FILE key=value ...` -> `run(cfg)` -> one JSON line."""

from __future__ import annotations

import json
import logging
from typing import Callable, Sequence, TypeVar

from pydantic import BaseModel

from common.config import job_argument_parser, load_config

C = TypeVar("C", bound=BaseModel)

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def recipe_main(schema: type[C], run: Callable[[C], dict], description: str, argv: Sequence[str] | None = None,
                report: tuple[str, ...] = ()) -> dict:
    """Parse `--config` and overrides, validate them against `schema`, run, print the summary. With
    `--seeds 0 1 2` the recipe runs once per seed and the summary is their mean and spread
    (training/seeds.py; `report` names the values its Markdown table shows)."""
    parser = job_argument_parser(description)
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="run once per seed (train.seed; runs named <name>_seed<k>) and report mean and spread")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = load_config(schema, args.config, args.overrides)
    if args.seeds:
        from training.seeds import run_seeds

        summary = run_seeds(run, cfg, args.seeds, report)
    else:
        summary = run(cfg)
    print(json.dumps(summary, ensure_ascii=False))
    return summary
