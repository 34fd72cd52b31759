"""Atomic file writes: write beside the target under a temporary name, then rename over it.

A reader (or a resumed job) sees either the old file or the complete new one, never a partial
write. Every job, pipeline and checkpoint writer goes through these.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def temporary_sibling(path: str | Path) -> Path:
    """`<dir>/<name>.tmp`: the temporary name used while `path` is being written."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to; renamed over `path` when the block ends
    without error, removed otherwise. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = 1) -> None:
    """`payload` as JSON (UTF-8, non-ASCII kept) to `path` atomically."""
    atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=indent))


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the file (e.g. `np.save`, `torch.save`, `fig.savefig`); then it is
    renamed over `path`. The temporary name keeps `path`'s suffix, for writers that infer the
    format from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside `path`; when the block ends without error it
    replaces `path` (an existing folder is removed first), otherwise it is removed."""
    path = Path(path)
    tmp = temporary_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
