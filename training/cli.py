"""The command line every recipe shares: `--config FILE key=value ...` -> `run(cfg)` -> one JSON line."""

from __future__ import annotations

import json
import logging
from typing import Callable, Sequence, TypeVar

from pydantic import BaseModel

from common.config import job_argument_parser, load_config

C = TypeVar("C", bound=BaseModel)

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def recipe_main(schema: type[C], run: Callable[[C], dict], description: str, argv: Sequence[str] | None = None) -> dict:
    """Parse `--config` and overrides, validate them against `schema`, run, print the summary."""
    args = job_argument_parser(description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    summary = run(load_config(schema, args.config, args.overrides))
    print(json.dumps(summary, ensure_ascii=False))
    return summary
