"""Mixing auxiliary clips into primary training batches at 1:alpha (jobs/train_recognition.py).

An epoch is the primary data's; `MixSchedule` gives each batch of B primary clips its auxiliary
count so that after every batch the epoch's auxiliary clips so far are round(alpha x primary clips
so far): each batch carries floor or ceil of alpha x B, an epoch of N primary clips exactly
round(alpha x N), deterministically (alpha 0.2 with batches of 2 alternates 0 and 1 every few
batches instead of rounding 0.4 to 0 each time).

The auxiliary clips come from `auxiliary_stream`: an endless, seeded stream over the auxiliary
corpora's shard files, read with pyarrow on the worker (each worker its own files, or its own
samples by name when there are fewer files than workers), kept open across epochs so later epochs
continue where the last stopped (a resumed run starts the stream again), corpora interleaved in
proportion to their sizes.

    schedule = MixSchedule(0.2)
    counts = [schedule.take(b) for b in chunk_sizes(len(rows), batch_size)]
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import islice
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from pipelines.shards import read_shard_file
from pipelines.video_collate import rows_of


class MixSchedule:
    """Auxiliary clips per batch: `take(primary)` after `primary` more primary clips returns how
    many auxiliary clips go with them (cumulative rounding, halves up)."""

    def __init__(self, alpha: float):
        self.alpha = Fraction(str(alpha))  # exact: 0.2 is 1/5, so 5 clips give 1, not 1.0000000000000002
        self.primary = self.auxiliary = 0

    def take(self, primary: int) -> int:
        self.primary += primary
        target = math.floor(self.alpha * self.primary + Fraction(1, 2))
        count, self.auxiliary = target - self.auxiliary, target
        return count


def chunk_sizes(rows: int, batch_size: int) -> list[int]:
    """Sizes of the batches `rows` rows make (the last one short)."""
    return [min(batch_size, rows - i) for i in range(0, rows, batch_size)]


def primary_subset(names: Iterable[str], fraction: float, seed: int) -> list[str]:
    """round(fraction x N) names (at least one), sorted: the first of a permutation of the sorted
    names drawn from `seed`, so the subset depends on the seed, not on the row order."""
    ordered = sorted(set(names))
    if not ordered:
        raise ValueError("no samples to take a fraction of")
    keep = max(1, round(fraction * len(ordered)))
    order = np.random.default_rng(seed).permutation(len(ordered))[:keep]
    return sorted(ordered[i] for i in order)


def interleave(streams: Sequence[Iterator], weights: Sequence[int]) -> Iterator:
    """Items of endless `streams` in proportion to `weights`, deterministically: each draw goes to the
    stream furthest behind its share (smooth weighted round robin)."""
    if len(streams) != len(weights) or not streams or min(weights) <= 0:
        raise ValueError(f"interleave: {len(streams)} streams with weights {list(weights)} (need positive weights, one each)")
    total, credit = sum(weights), [0] * len(weights)
    while True:
        for i, w in enumerate(weights):
            credit[i] += w
        k = max(range(len(weights)), key=lambda i: credit[i])
        credit[k] -= total
        yield next(streams[k])


def shuffled(rows: Iterable[dict], buffer: int, rng: np.random.Generator) -> Iterator[dict]:
    """A local shuffle: rows leave a buffer of `buffer` rows at random (0 or 1: in order)."""
    if buffer <= 1:
        yield from rows
        return
    pending: list[dict] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= buffer:
            yield pending.pop(int(rng.integers(len(pending))))
    while pending:
        yield pending.pop(int(rng.integers(len(pending))))


def cycled(one_pass: Callable[[int], Iterable[dict]], what: str) -> Iterator[dict]:
    """`one_pass(0)`, `one_pass(1)`, ... without end; an empty pass is an error naming `what`."""
    for number in range(10**12):
        empty = True
        for row in one_pass(number):
            empty = False
            yield row
        if empty:
            raise ValueError(f"{what}: no clips to draw from")


def corpus_rows(files: Sequence[str], columns: Sequence[str], labels: dict[str, str], *, rank: int, world: int,
                shuffle_buffer: int, seed: Sequence[int], what: str) -> Iterator[dict]:
    """One auxiliary corpus' endless stream for worker `rank` of `world`: its files (file i goes to
    worker i mod world; with fewer files than workers every worker reads all and keeps its samples
    by name) in a fresh seeded order each pass, rows locally shuffled, each row's `gloss` replaced
    by `labels[name]` (the relabelled classes)."""
    from pipelines.recognition_batches import in_share  # here: recognition_batches imports this module

    own = list(files[rank::world]) if len(files) >= world else list(files)

    def one_pass(number: int) -> Iterator[dict]:
        rng = np.random.default_rng([*seed, rank, number])
        rows = (row for k in rng.permutation(len(own)) for row in rows_of(read_shard_file(own[k], columns))
                if len(files) >= world or in_share(str(row["name"]), rank, world))
        for row in shuffled(rows, shuffle_buffer, rng):
            name = str(row["name"])
            if name not in labels:
                raise KeyError(f"{what}: sample {name!r} has no label (its shards changed after the run started?)")
            yield {**row, "gloss": labels[name]}

    return cycled(one_pass, f"{what} (worker {rank} of {world})")


def auxiliary_stream(corpora: Sequence[dict], columns: Sequence[str], *, rank: int, world: int, shuffle_buffer: int,
                     seed: int) -> Iterator[dict]:
    """Rows of every auxiliary corpus (`corpora`: {"name", "files", "labels"}), interleaved in
    proportion to their numbers of labelled samples."""
    streams = [corpus_rows(c["files"], columns, c["labels"], rank=rank, world=world, shuffle_buffer=shuffle_buffer,
                           seed=[seed, i], what=f"auxiliary corpus {c['name']}") for i, c in enumerate(corpora)]
    return interleave(streams, [len(c["labels"]) for c in corpora])


def take(stream: Iterator[dict] | None, count: int) -> list[dict]:
    """The next `count` rows of `stream` (none for count 0 or no stream)."""
    return list(islice(stream, count)) if stream is not None and count > 0 else []
