"""Corpus readers: official PHOENIX-2014T / PHOENIX-2014 CSVs, the papers' gzip-pickle lists
(PHOENIX-2014T, PHOENIX-2014, CSL-Daily) and the synthetic corpus. All return `list[Sample]`.

Bad input raises `CorpusFormatError` naming the file and line (CSV) or entry (pickle). Where the
caller passes a `skipped` list, a bad row is appended there as a `RowProblem` (and logged)
instead, so skipping is always the caller's explicit choice and never silent.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict

from pipelines.records import SPLITS, Sample

log = logging.getLogger(__name__)

PHOENIX2014T_COLUMNS = ("name", "video", "start", "end", "speaker", "orth", "translation")
PHOENIX2014_COLUMNS = ("id", "folder", "signer", "annotation")


class CorpusFormatError(ValueError):
    """An annotation file is malformed; the message names the file and the line or entry."""


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped at the caller's request: where it is and what is wrong."""

    path: str
    line: int  # 1-based line (CSV) or 0-based entry index (pickle)
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def infer_split(path: str | Path) -> str:
    """'train' / 'dev' / 'test' from a file name such as `PHOENIX-2014-T.dev.corpus.csv`."""
    parts = re.split(r"[._\-/]", Path(path).name.lower())
    found = [s for s in SPLITS if s in parts]
    if len(found) != 1:
        raise CorpusFormatError(f"{path}: cannot infer the split from the file name; pass split=")
    return found[0]


def _read_lines(path: Path) -> list[str]:
    """The file's lines, decoded as UTF-8; a bad byte is reported with its line number."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusFormatError(f"{path}: file not found") from None
    lines = []
    for number, chunk in enumerate(raw.splitlines(), start=1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CorpusFormatError(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return lines


def _reject(problem: RowProblem, skipped: list[RowProblem] | None) -> None:
    if skipped is None:
        raise CorpusFormatError(str(problem))
    log.warning("skipping %s", problem)
    skipped.append(problem)


def _read_bar_csv(
    path: Path, columns: tuple[str, ...], skipped: list[RowProblem] | None
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a '|'-separated file with a header that must contain `columns`: (line, row)."""
    lines = _read_lines(path)
    if not lines:
        raise CorpusFormatError(f"{path}: empty file (expected a header {'|'.join(columns)})")
    header = next(csv.reader([lines[0]], delimiter="|", quoting=csv.QUOTE_NONE))
    missing = [c for c in columns if c not in header]
    if missing:
        raise CorpusFormatError(f"{path}:1: missing column(s) {missing}; header is {header}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = next(csv.reader([line], delimiter="|", quoting=csv.QUOTE_NONE))
        if len(fields) != len(header):
            _reject(RowProblem(str(path), number, f"expected {len(header)} '|'-separated fields, got {len(fields)}"), skipped)
            continue
        yield number, dict(zip(header, fields))


def _check_unique(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.name in seen:
            raise CorpusFormatError(f"{path}: duplicate sample name {s.name!r}")
        seen.add(s.name)


def read_phoenix2014t_csv(
    path: str | Path,
    *,
    split: str | None = None,
    language: str = "dgs",
    require_text: bool = True,
    skipped: list[RowProblem] | None = None,
) -> list[Sample]:
    """The official PHOENIX-2014T corpus CSV (`name|video|start|end|speaker|orth|translation`).

    `num_frames` is `end - start + 1` when both are >= 0 (the official files say -1: unknown).
    The synthetic corpus uses the same format.
    """
    path = Path(path)
    split = split or infer_split(path)
    samples = []
    for number, row in _read_bar_csv(path, PHOENIX2014T_COLUMNS, skipped):
        name = row["name"].strip()
        glosses = tuple(row["orth"].split())
        text = row["translation"].strip()
        problem = None
        if not name:
            problem = "empty name"
        elif not glosses:
            problem = f"sample {name!r}: empty gloss sequence"
        elif require_text and not text:
            problem = f"sample {name!r}: empty translation"
        else:
            try:
                start, end = int(row["start"]), int(row["end"])
            except ValueError:
                problem = f"sample {name!r}: start/end must be integers, got {row['start']!r}/{row['end']!r}"
        if problem:
            _reject(RowProblem(str(path), number, problem), skipped)
            continue
        num_frames = end - start + 1 if start >= 0 and end >= start else None
        samples.append(
            Sample(name, split, row["speaker"].strip(), glosses, text or None, num_frames, row["video"].strip() or None, language)
        )
    _check_unique(samples, path)
    return samples


def read_phoenix2014_csv(
    path: str | Path,
    *,
    split: str | None = None,
    language: str = "dgs",
    skipped: list[RowProblem] | None = None,
) -> list[Sample]:
    """The official PHOENIX-2014 multi-signer corpus CSV (`id|folder|signer|annotation`); no text."""
    path = Path(path)
    split = split or infer_split(path)
    samples = []
    for number, row in _read_bar_csv(path, PHOENIX2014_COLUMNS, skipped):
        name = row["id"].strip()
        glosses = tuple(row["annotation"].split())
        if not name or not glosses:
            _reject(RowProblem(str(path), number, f"sample {name!r}: empty {'name' if not name else 'gloss sequence'}"), skipped)
            continue
        samples.append(Sample(name, split, row["signer"].strip(), glosses, None, None, row["folder"].strip() or None, language))
    _check_unique(samples, path)
    return samples


def _placeholder(*args: Any, **kwargs: Any) -> None:
    return None


class _AnnotationUnpickler(pickle.Unpickler):
    """Loads the public code's annotation lists without torch and without running arbitrary code:
    the unused `sign` feature tensors become None, any other global is refused."""

    _placeholders = {("torch._utils", "_rebuild_tensor_v2"), ("torch.storage", "_load_from_bytes")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._placeholders:
            return _placeholder
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def read_slrt_pickle(
    path: str | Path,
    *,
    language: str,
    split: str | None = None,
    skipped: list[RowProblem] | None = None,
) -> list[Sample]:
    """The gzip-pickle annotation lists of the papers' public code (PHOENIX-2014T, PHOENIX-2014,
    CSL-Daily): dicts with name, signer, gloss, text (absent for PHOENIX-2014), num_frames."""
    path = Path(path)
    split = split or infer_split(path)
    try:
        with gzip.open(path, "rb") as f:
            entries = _AnnotationUnpickler(f).load()
    except FileNotFoundError:
        raise CorpusFormatError(f"{path}: file not found") from None
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise CorpusFormatError(f"{path}: not a gzip-pickle annotation list ({exc})") from None
    if not isinstance(entries, list):
        raise CorpusFormatError(f"{path}: expected a list of dicts, got {type(entries).__name__}")
    samples = []
    for index, entry in enumerate(entries):
        problem = None
        if not isinstance(entry, dict):
            problem = f"entry is a {type(entry).__name__}, not a dict"
        else:
            missing = [k for k in ("name", "gloss", "num_frames") if k not in entry]
            glosses = tuple(str(entry.get("gloss", "")).split())
            if missing:
                problem = f"entry {entry.get('name', '?')!r}: missing key(s) {missing}"
            elif not glosses:
                problem = f"entry {entry['name']!r}: empty gloss sequence"
            elif not isinstance(entry["num_frames"], int) or entry["num_frames"] <= 0:
                problem = f"entry {entry['name']!r}: num_frames must be a positive int, got {entry['num_frames']!r}"
        if problem:
            _reject(RowProblem(str(path), index, problem), skipped)
            continue
        raw_name = str(entry["name"])
        # PHOENIX-2014T names carry the split ("dev/<name>"); PHOENIX-2014 names are frame paths and
        # the frame folder is in "folder" ("<name>/1/*.png").
        video = str(entry["folder"]) if "folder" in entry else raw_name
        name = video.split("/")[0] if "folder" in entry else raw_name.rsplit("/", 1)[-1]
        text = entry.get("text")
        samples.append(
            Sample(name, split, str(entry.get("signer", "")), glosses, str(text) if text else None, entry["num_frames"], video, language)
        )
    _check_unique(samples, path)
    return samples


CorpusFormat = Literal["phoenix2014t_csv", "phoenix2014_csv", "slrt_pickle", "synthetic"]


class CorpusConfig(BaseModel):
    """Where a corpus' annotations and videos are, as configs give it.

    name: the corpus, which fixes gloss clean-up and scoring level ("phoenix2014t", "phoenix2014",
        "csl-daily", or "synthetic").
    files: annotation file per split (not needed for format "synthetic", which finds
        `<root>/<language>/<language>.<split>.corpus.csv`).
    video_root: folder the samples' `video` paths are relative to; "{split}" is replaced by the
        split (PHOENIX-2014T: `.../features/fullFrame-210x260px/{split}`).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    format: CorpusFormat
    language: str
    files: dict[str, str] = {}
    root: str | None = None
    video_root: str | None = None

    def annotation_file(self, split: str) -> Path:
        if self.format == "synthetic":
            if self.root is None:
                raise CorpusFormatError(f"corpus {self.name!r}: format 'synthetic' needs root=")
            return Path(self.root) / self.language / f"{self.language}.{split}.corpus.csv"
        if split not in self.files:
            raise CorpusFormatError(f"corpus {self.name!r}: no annotation file for split {split!r} (files has {sorted(self.files)})")
        return Path(self.files[split])

    def video_dir(self, split: str) -> Path | None:
        if self.format == "synthetic" and self.video_root is None:
            return Path(self.root) / self.language if self.root else None
        return Path(self.video_root.replace("{split}", split)) if self.video_root else None


def read_corpus(config: CorpusConfig, split: str, *, skipped: list[RowProblem] | None = None) -> list[Sample]:
    """Read one split of the corpus a config describes."""
    path = config.annotation_file(split)
    if config.format in ("phoenix2014t_csv", "synthetic"):
        return read_phoenix2014t_csv(path, split=split, language=config.language, skipped=skipped)
    if config.format == "phoenix2014_csv":
        return read_phoenix2014_csv(path, split=split, language=config.language, skipped=skipped)
    return read_slrt_pickle(path, split=split, language=config.language, skipped=skipped)


def read_synthetic_manifest(root: str | Path) -> dict:
    """The synthetic corpus' `synthetic.json` (languages, vocabularies, sizes, config)."""
    path = Path(root) / "synthetic.json"
    if not path.exists():
        raise CorpusFormatError(f"{path}: not found — is {root} a complete synthetic corpus? (run jobs/synthesize.py)")
    return json.loads(path.read_text())
