"""Isolated-sign batches from dictionary clips (pipelines/dictionary.py): the classes each language
keeps, fixed-length clips, and the collate.

    classes = select_classes({"sgsl-a": counts_a, "sgsl-b": counts_b}, {"sgsl-a": 8, "sgsl-b": 8})
    collate = ISLRCollate(VideoCollateConfig(...), train=True, classes=classes, clip_frames=16, generator=seed)

Clips are padded or cut to `clip_frames` (16, the paper) by `temporal_window`: a longer clip is cut
to a window of that length, at a random start when training and centred otherwise; a shorter one
is padded by repeating its first and last frames, centred. Space and colour as `VideoCollate` does
(the papers' crop and jitter when training, the whole frame otherwise).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from pipelines.video_collate import VideoCollate, VideoCollateConfig, rows_of


def select_classes(counts: dict[str, Counter], min_count: dict[str, int]) -> dict[str, list[str]]:
    """Each language's classes: its glosses with at least `min_count[language]` training clips, sorted."""
    return {lang: sorted(g for g, n in c.items() if n >= min_count[lang]) for lang, c in counts.items()}


def temporal_window(num_frames: int, length: int, *, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices (length,) of a clip of `num_frames` frames brought to `length` (module docstring)."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if num_frames >= length:
        start = int(rng.integers(0, num_frames - length + 1)) if train else (num_frames - length) // 2
        return np.arange(start, start + length, dtype=np.int64)
    left = (length - num_frames) // 2
    return np.clip(np.arange(length) - left, 0, num_frames - 1).astype(np.int64)


class ISLRCollate:
    """Dictionary rows (Ray's column dict or a list of row dicts) -> VideoCollate's batch of
    `clip_frames`-frame clips plus `language` (B,) head index and `targets` (B,) class index.
    A clip whose language or gloss is not among `classes` raises, naming it."""

    def __init__(self, config: VideoCollateConfig, *, train: bool, classes: dict[str, list[str]], clip_frames: int = 16,
                 generator: int | np.random.Generator | None = None):
        self.video = VideoCollate(config, train=train, generator=generator)
        self.train, self.clip_frames = train, clip_frames
        self.languages = list(classes)
        self.index = {lang: {g: i for i, g in enumerate(gs)} for lang, gs in classes.items()}

    def __call__(self, batch: Any) -> dict[str, Any]:
        rows = rows_of(batch)
        language, targets = [], []
        for r in rows:
            lang, gloss = str(r["language"]), str(r["gloss"])
            if lang not in self.index or gloss not in self.index[lang]:
                raise ValueError(f"clip {r['name']}: {lang} gloss {gloss!r} is not one of the classes of languages {self.languages}")
            language.append(self.languages.index(lang))
            targets.append(self.index[lang][gloss])
        plans = self.video.plan(rows)
        for r, plan in zip(rows, plans):
            plan["indices"] = temporal_window(int(r["num_frames"]), self.clip_frames, train=self.train, rng=self.video.rng)
        out = self.video(rows, plans)
        out["language"] = torch.tensor(language, dtype=torch.int64)
        out["targets"] = torch.tensor(targets, dtype=torch.int64)
        return out


def keeps_class(row: dict, classes: dict[str, list[str]]) -> bool:
    """Whether a clip's gloss is one of its language's classes."""
    return str(row["gloss"]) in classes.get(str(row["language"]), ())


def clip_batches(batches: Iterable[Any], collate: ISLRCollate, batch_size: int) -> Iterator[dict[str, Any]]:
    """Ray numpy batches (or lists of rows) -> collated batches of `batch_size` clips (the last one shorter)."""
    pending: list[dict] = []
    for batch in batches:
        pending.extend(rows_of(batch))
        while len(pending) >= batch_size:
            yield collate(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        yield collate(pending)
