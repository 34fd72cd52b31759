"""YAML configs merged with `key=value` overrides (OmegaConf) and validated (pydantic).

Every job declares its config as a pydantic model with `extra="forbid"`; `load_config` turns a
YAML file plus command-line overrides into an instance of it, or raises `ConfigError` naming the
file, the key and what is wrong (unknown key, wrong type, missing value).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, ValidationError

from common.files import atomic_write_text

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override is invalid; the message says where and why."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_config(schema: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Load `path` (YAML), apply `key=value` / `a.b=value` overrides and validate against `schema`."""
    source = str(path) if path is not None else "<defaults>"
    try:
        base = OmegaConf.load(path) if path is not None else OmegaConf.create({})
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: config file not found") from exc
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.epochs=3)")
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: cannot merge overrides {list(overrides)}: {exc}") from exc
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                lines.append(f"  {key}: unknown key")
            else:
                lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: invalid {schema.__name__}:\n" + "\n".join(lines)) from None


def config_hash(config: BaseModel, exclude: set[str] | None = None, extra: dict | None = None) -> str:
    """A short stable hash of a config's values (sorted JSON) less the `exclude` fields, for cache
    keys and manifests; with `extra`, of {"config": those values, **extra} (inputs beside the config)."""
    values = config.model_dump(mode="json", exclude=exclude)
    payload = json.dumps({"config": values, **extra} if extra else values, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run records exactly what it used."""
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def job_argument_parser(description: str) -> argparse.ArgumentParser:
    """`--config FILE` plus free `key=value` overrides; jobs add their own flags on top."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=3")
    return parser


def to_plain(value: Any) -> Any:
    """Pydantic models (nested) → plain dicts/lists, for logging and JSON summaries."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
