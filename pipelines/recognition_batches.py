"""Recognition batches from shard rows: the gloss labels beside `VideoCollate`'s video batch,
length-bucketed training epochs (from the shards or a decoded in-memory replay) and evaluation
batches of one worker's share of a split.

    collate = RecognitionCollate(VideoCollateConfig(...), train=True, glosses=vocab.glosses, generator=seed)
    for batch in train_batches(shard, collate, batch_size=16, length_buckets=4, ...): ...
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from pipelines.mixed_batches import MixSchedule, chunk_sizes, take
from pipelines.video_collate import VideoCollate, VideoCollateConfig, predecode_row, rows_of
from pipelines.vocabulary import GlossVocabulary


def shard_columns(with_keypoints: bool) -> list[str]:
    cols = ["name", "gloss", "frames", "num_frames", "height", "width"]
    return cols + (["keypoints"] if with_keypoints else [])


def subsample_row(row: dict, stride: int) -> dict:
    """Keep every `stride`-th frame (and keypoint row) of one shard row."""
    if stride == 1:
        return row
    row = dict(row)
    row["frames"] = row["frames"][::stride]
    if row.get("keypoints") is not None and len(row["keypoints"]):
        row["keypoints"] = np.asarray(row["keypoints"])[::stride]
    row["num_frames"] = len(row["frames"])
    return row


class RecognitionCollate(NumpyBatchCollateFn):
    """Shard rows (Ray's numpy column dict or a list of row dicts) -> VideoCollate's batch plus
    `labels` (B, L) gloss ids padded with pad_id, `label_lengths` (B,) and `unknown_glosses`
    (tokens not in the vocabulary, mapped to <unk>)."""

    def __init__(self, config: VideoCollateConfig, *, train: bool, glosses: list[str], frame_stride: int = 1,
                 generator: int | None = None):
        self.video = VideoCollate(config, train=train, generator=generator)
        self.glosses = list(glosses)
        self.frame_stride = frame_stride
        self._vocab: GlossVocabulary | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_vocab": None}

    @property
    def vocab(self) -> GlossVocabulary:
        if self._vocab is None:
            self._vocab = GlossVocabulary(self.glosses)
        return self._vocab

    def prepare(self, batch: Any) -> list[dict]:
        """Ray's column dict or a list of rows -> rows with `frame_stride` applied."""
        return [subsample_row(r, self.frame_stride) for r in rows_of(batch)]

    def bucketed(self, rows: list[dict], batch_size: int, order_seed: int | None = None, auxiliary: list[dict] | None = None,
                 aux_counts: list[int] | None = None) -> Iterator[dict]:
        """Batches of `batch_size` from prepared `rows` (several batches' worth): each clip's
        augmentation is drawn first, clips of similar output length are batched together (less
        padding) and the batches come in random order, drawn from `order_seed` when given (DDP
        workers passing the same seed step through their k-th shortest batches together). With
        prepared `auxiliary` rows, the k-th shortest batch also gets the next `aux_counts[k]` of them,
        shortest first; each batch says how many it got (`aux_clips`)."""
        auxiliary, n = auxiliary or [], len(rows)
        plans = self.video.plan(rows + auxiliary)
        order = sorted(range(n), key=lambda i: len(plans[i]["indices"]))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        counts = aux_counts or [0] * len(chunks)
        if len(counts) != len(chunks) or sum(counts) != len(auxiliary):
            raise ValueError(f"{len(auxiliary)} auxiliary rows for {len(chunks)} batches with counts {counts}")
        extra = sorted(range(n, n + len(auxiliary)), key=lambda i: len(plans[i]["indices"]))
        ends = np.cumsum([0, *counts])
        chunks = [c + extra[ends[k] : ends[k + 1]] for k, c in enumerate(chunks)]
        everything = rows + auxiliary
        rng = self.video.rng if order_seed is None else np.random.default_rng(order_seed)
        for k in rng.permutation(len(chunks)):
            batch = self.collate_prepared([everything[i] for i in chunks[k]], [plans[i] for i in chunks[k]])
            batch["aux_clips"] = counts[k]
            yield batch

    def __call__(self, batch: Any) -> dict[str, Any]:
        return self.collate_prepared(self.prepare(batch))

    def collate_prepared(self, rows: list[dict], plans: list[dict] | None = None) -> dict[str, Any]:
        out = self.video(rows, plans)
        vocab = self.vocab
        unknown_before = sum(vocab.unknown_counts.values())
        ids = [vocab.encode(g.split()) for g in out["glosses"]]
        lengths = [len(x) for x in ids]
        labels = torch.full((len(ids), max([1, *lengths])), vocab.pad_id, dtype=torch.int64)
        for i, x in enumerate(ids):
            labels[i, : len(x)] = torch.tensor(x, dtype=torch.int64)
        out["labels"] = labels
        out["label_lengths"] = torch.tensor(lengths, dtype=torch.int64)
        out["unknown_glosses"] = sum(vocab.unknown_counts.values()) - unknown_before
        return out


def train_batches(shard, collate: RecognitionCollate, cache: list[dict] | None, *, batch_size: int, length_buckets: int = 1,
                  shuffle_buffer: int = 0, cache_size: int | None = None, replay: bool, shuffle_seed: int,
                  order_seed: int, auxiliary: Iterator[dict] | None = None, alpha: float = 0.0) -> Iterator[dict]:
    """One epoch of training batches for this worker. Rows come from the Ray Data shard (local
    shuffle buffer of `shuffle_buffer` rows), or with `replay` from `cache` in a fresh random order;
    otherwise a non-None `cache` is filled with the epoch's rows, frames decoded (`predecode_row`,
    shrunk to `cache_size` px). Rows are drawn `length_buckets` batches at a time and batched by
    augmented length (`RecognitionCollate.bucketed`; `order_seed`, the same on every worker,
    orders the batches). With an `auxiliary` row stream, every batch of primary clips also carries
    auxiliary clips at 1:`alpha` over the epoch (pipelines/mixed_batches.py: MixSchedule)."""
    group = batch_size * length_buckets
    schedule = MixSchedule(alpha)

    def row_groups() -> Iterator[list[dict]]:
        if replay:
            order = collate.video.rng.permutation(len(cache))
            for i in range(0, len(order), group):
                yield [cache[j] for j in order[i : i + group]]
            return
        for batch in shard.iter_batches(batch_size=group, batch_format="numpy",
                                        local_shuffle_buffer_size=shuffle_buffer or None,
                                        local_shuffle_seed=shuffle_seed if shuffle_buffer else None):
            rows = collate.prepare(batch)
            if cache is not None:
                rows = [predecode_row(r, cache_size) for r in rows]
                cache.extend(rows)
            yield rows

    for i, rows in enumerate(row_groups()):
        counts = [schedule.take(size) for size in chunk_sizes(len(rows), batch_size)] if auxiliary is not None else None
        extra = collate.prepare(take(auxiliary, sum(counts))) if counts else None
        yield from collate.bucketed(rows, batch_size, order_seed=order_seed * 100_003 + i, auxiliary=extra, aux_counts=counts)


def in_share(name: str, rank: int, world: int) -> bool:
    """A stable partition of an evaluation split over workers (by name, whatever the row order)."""
    return world == 1 or zlib.crc32(name.encode("utf-8")) % world == rank


def eval_batches(batches: Iterable[dict], collate: RecognitionCollate, batch_size: int, rank: int = 0,
                 world: int = 1) -> Iterator[dict]:
    """Ray numpy batches of an evaluation split -> collated batches of this worker's share."""
    pending: list[dict] = []
    for batch in batches:
        pending.extend(r for r in rows_of(batch) if in_share(str(r["name"]), rank, world))
        while len(pending) >= batch_size:
            yield collate(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        yield collate(pending)
