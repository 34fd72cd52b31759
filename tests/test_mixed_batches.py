"""Mixed training's data side (pipelines/mixed_batches.py, pipelines/auxiliary_labels.py): the 1:alpha
schedule per batch and epoch, batches with auxiliary clips, the seeded primary subset, the
auxiliary stream over shard files, relabel files, the union vocabulary and the config errors."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.config import ConfigError, load_config
from jobs.train_recognition import RecognitionConfig
from pipelines.auxiliary_labels import auxiliary_labels, read_relabel, union_glosses, write_relabel
from pipelines.mixed_batches import MixSchedule, chunk_sizes, corpus_rows, interleave, primary_subset, shuffled
from pipelines.recognition_batches import RecognitionCollate, train_batches
from pipelines.video_collate import VideoCollateConfig

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/recognition/synthetic_tiny.yaml"


# ---- the 1:alpha schedule -------------------------------------------------------------------------


def test_schedule_rounds_cumulatively_per_batch_and_exactly_per_epoch():
    s = MixSchedule(0.2)  # 2 clips a batch: 0.4 each, cumulative 0.4 0.8 1.2 1.6 2.0 ... rounded half up
    assert [s.take(2) for _ in range(10)] == [0, 1, 0, 1, 0, 0, 1, 0, 1, 0] and s.auxiliary == 4
    s = MixSchedule(0.3)  # 8, 16, 24, 27 primary clips -> 2.4, 4.8, 7.2, 8.1 -> 2, 5, 7, 8
    assert [s.take(n) for n in chunk_sizes(27, 8)] == [2, 3, 2, 1]
    assert chunk_sizes(27, 8) == [8, 8, 8, 3] and chunk_sizes(0, 4) == []
    assert [MixSchedule(0.0).take(8) for _ in range(3)] == [0, 0, 0]
    s = MixSchedule(0.1)  # batches of one clip (the papers' 8 GPUs x 1): every tenth clip brings one
    assert sum(s.take(1) for _ in range(35)) == 4 == round(0.1 * 35 + 0.5 - 1e-9)
    for alpha in (0.1, 0.2, 0.3, 0.4, 0.6, 0.8):  # the paper's grid: never off by one over an epoch
        s = MixSchedule(alpha)
        counts = [s.take(7) for _ in range(100)]
        assert sum(counts) == round(alpha * 700) and set(counts) <= {int(np.floor(alpha * 7)), int(np.ceil(alpha * 7))}


class ListShard:
    """Stands in for a Ray Data shard: `iter_batches` over row lists."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def iter_batches(self, *, batch_size: int, **_):
        for i in range(0, len(self.rows), batch_size):
            yield self.rows[i : i + batch_size]


def _rows(prefix: str, lengths: list[int], gloss: str, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"name": f"{prefix}{i}", "gloss": gloss, "num_frames": n, "height": 12, "width": 12,
             "frames": rng.integers(0, 255, (n, 12, 12, 3), dtype=np.uint8)} for i, n in enumerate(lengths)]


def test_train_batches_carry_auxiliary_clips_at_the_schedules_counts():
    """10 primary clips in batches of 2 drawn 3 batches at a time, alpha 0.5: every batch gets one
    auxiliary clip (relabelled classes, the length-sorted ones with the shorter primary batches);
    the epoch has 5 of them; without a stream the batches are the plain recipe's."""
    collate_cfg = VideoCollateConfig(height=8, width=8)
    primary = _rows("p", [4, 40, 8, 36, 12, 32, 16, 28, 20, 24], "A B")
    aux = iter(_rows("x", [30, 5, 18, 9, 26, 14, 7], "A lang:Q", seed=1))
    glosses = ["A", "B", "lang:Q"]
    kw = dict(batch_size=2, length_buckets=3, replay=False, shuffle_seed=0, order_seed=3)
    batches = list(train_batches(ListShard(primary), RecognitionCollate(collate_cfg, train=True, glosses=glosses, generator=0),
                                 None, **kw, auxiliary=aux, alpha=0.5))
    assert len(batches) == 5 and [b["aux_clips"] for b in batches] == [1, 1, 1, 1, 1]
    for b in batches:
        names = list(b["names"])
        assert sum(n.startswith("x") for n in names) == b["aux_clips"] and len(names) == 3
        aux_rows = [i for i, n in enumerate(names) if n.startswith("x")]
        assert all(b["labels"][i, :2].tolist() == [3, 5] for i in aux_rows) and b["unknown_glosses"] == 0
    assert sorted(n for b in batches for n in b["names"] if n.startswith("p")) == sorted(r["name"] for r in primary)
    assert next(aux)["name"] == "x5"  # 5 drawn, the stream continues from there (the next epoch)
    group = batches[:3]  # 3 auxiliary clips of one group go, shortest first, with the shorter primary batches
    by_primary = sorted(group, key=lambda b: int(b["frame_lengths"][[not n.startswith("x") for n in b["names"]]].max()))
    aux_len = [int(b["frame_lengths"][[n.startswith("x") for n in b["names"]]][0]) for b in by_primary]
    assert aux_len == sorted(aux_len)

    plain = list(train_batches(ListShard(primary), RecognitionCollate(collate_cfg, train=True, glosses=glosses, generator=0),
                               None, **kw))
    zero = list(train_batches(ListShard(primary), RecognitionCollate(collate_cfg, train=True, glosses=glosses, generator=0),
                              None, **kw, auxiliary=iter([]), alpha=0.0))
    assert [list(b["names"]) for b in plain] == [list(b["names"]) for b in zero]  # alpha 0 draws nothing
    assert all(b["aux_clips"] == 0 for b in plain)

    # alpha 0.2 with batches of 2 and a short last batch: 11 clips -> 2 auxiliary, per batch as the schedule says
    s = MixSchedule(0.2)
    want = [s.take(n) for n in chunk_sizes(6, 2) + chunk_sizes(5, 2)]
    eleven = list(train_batches(ListShard(primary + _rows("q", [10], "B")), RecognitionCollate(collate_cfg, train=True, glosses=glosses,
                                generator=0), None, **kw, auxiliary=iter(_rows("x", [5, 6, 7], "A", seed=2)), alpha=0.2))
    assert sum(b["aux_clips"] for b in eleven) == 2 == sum(want) and len(eleven) == 6
    assert sorted(b["aux_clips"] for b in eleven) == sorted(want)


# ---- the primary subset, the auxiliary stream ------------------------------------------------------


def test_primary_subset_is_fixed_by_the_seed_not_the_row_order():
    names = [f"v{i:03d}" for i in range(50)]
    a = primary_subset(names, 0.2, seed=0)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(names)
    assert primary_subset(list(reversed(names)), 0.2, seed=0) == a  # same samples whatever the order
    assert primary_subset(names, 0.2, seed=1) != a
    assert len(primary_subset(names, 0.6, seed=0)) == 30 and primary_subset(names, 1.0, seed=3) == names
    assert primary_subset(names, 0.001, seed=0) and len(primary_subset(names, 0.001, seed=0)) == 1
    with pytest.raises(ValueError, match="no samples"):
        primary_subset([], 0.5, seed=0)


def test_interleave_and_shuffle():
    a, b = iter(range(100)), iter(range(1000, 1100))
    got = list(islice(interleave([a, b], [3, 1]), 8))
    assert sum(x < 1000 for x in got) == 6 and got[:4].count(1000) + got[:4].count(1001) == 1
    with pytest.raises(ValueError, match="positive weights"):
        next(interleave([iter([])], [0]))
    rows = [{"i": i} for i in range(20)]
    out = list(shuffled(iter(rows), 5, np.random.default_rng(0)))
    assert sorted(r["i"] for r in out) == list(range(20)) and [r["i"] for r in out] != list(range(20))
    assert list(shuffled(iter(rows), 0, np.random.default_rng(0))) == rows


def _parquet(path: Path, names: list[str], gloss: str = "G0") -> str:
    pq.write_table(pa.table({"name": names, "gloss": [gloss] * len(names)}), path)
    return str(path)


def test_corpus_rows_cycle_relabel_and_split_by_worker(tmp_path):
    files = [_parquet(tmp_path / f"f{i}.parquet", [f"s{i}{j}" for j in range(3)]) for i in range(3)]
    labels = {f"s{i}{j}": f"L{i}{j}" for i in range(3) for j in range(3)}
    kw = dict(columns=["name", "gloss"], labels=labels, shuffle_buffer=4, seed=[0, 0], what="aux")
    one = corpus_rows(files, rank=0, world=1, **kw)
    first = list(islice(one, 9))
    assert sorted(r["name"] for r in first) == sorted(labels) and all(r["gloss"] == labels[r["name"]] for r in first)
    second = list(islice(one, 9))  # the next pass: every sample again, in another order
    assert sorted(r["name"] for r in second) == sorted(labels) and [r["name"] for r in second] != [r["name"] for r in first]
    again = [r["name"] for r in islice(corpus_rows(files, rank=0, world=1, **kw), 18)]
    assert again == [r["name"] for r in first + second]  # seeded

    # 3 files, 2 workers: files 0, 2 and file 1; 3 files, 4 workers: every worker its samples by name
    w0 = {r["name"] for r in islice(corpus_rows(files, rank=0, world=2, **kw), 6)}
    w1 = {r["name"] for r in islice(corpus_rows(files, rank=1, world=2, **kw), 3)}
    assert w0 == {n for n in labels if n[1] in "02"} and w1 == {n for n in labels if n[1] == "1"}
    shares = [set() for _ in range(4)]
    for rank in range(4):
        stream = corpus_rows(files, rank=rank, world=4, **kw)
        try:
            shares[rank] = {r["name"] for r in islice(stream, 9)}
        except ValueError as e:
            assert "worker" in str(e) and "no clips" in str(e)
    assert set().union(*shares) == set(labels) and sum(len(s) for s in shares) == 9
    with pytest.raises(KeyError, match=r"aux: sample 's0.' has no label"):
        next(corpus_rows(files[:1], **{**kw, "labels": {}}, rank=0, world=1))


# ---- relabel files, labels and the vocabulary ------------------------------------------------------


SAMPLES = {"b0": "X Y", "b1": "Y Z X", "b2": "W"}
PRIMARY = {"A", "B", "X"}


def test_relabel_maps_into_primary_classes_and_keeps_the_rest_apart(tmp_path):
    path = tmp_path / "relabelled.jsonl"
    write_relabel(path, {"b0": ["A", "sgsl-b:Y"], "b1": ["sgsl-b:Y", "B", "A"], "b2": ["sgsl-b:W"]})
    assert json.loads(path.read_text().splitlines()[0]) == {"name": "b0", "gloss": "A sgsl-b:Y"}
    relabel = read_relabel(path)
    labels = auxiliary_labels(SAMPLES, PRIMARY, language="sgsl-b", relabel=relabel, same_language=False, source=str(path))
    assert labels.labels == {"b0": "A sgsl-b:Y", "b1": "sgsl-b:Y B A", "b2": "sgsl-b:W"}
    assert (labels.classes, labels.mapped) == (4, 2)  # X -> A, Z -> B; Y, W kept
    assert labels.summary() == {"clips": 3, "classes": 4, "mapped": 2, "mapped_share": 0.5}
    assert union_glosses(["B", "A", "X"], [labels]) == ["B", "A", "X", "sgsl-b:W", "sgsl-b:Y"]

    own = auxiliary_labels(SAMPLES, PRIMARY, language="sgsl-b", relabel=None, same_language=False, source="s")
    assert own.labels["b1"] == "sgsl-b:Y sgsl-b:Z sgsl-b:X" and own.mapped == 0  # the multi-task baseline
    same = auxiliary_labels(SAMPLES, PRIMARY, language="dgs", relabel=None, same_language=True, source="s")
    assert same.labels == SAMPLES and (same.classes, same.mapped) == (4, 1)  # X is one class with the primary's X
    assert union_glosses(["A", "B", "X"], [same, own]) == ["A", "B", "X", "W", "Y", "Z", *sorted(f"sgsl-b:{g}" for g in "WXYZ")]


def test_relabel_errors_name_the_file_and_the_sample(tmp_path):
    path = tmp_path / "r.jsonl"
    good = {"b0": ["A", "b:Y"], "b1": ["b:Y", "B", "A"], "b2": ["b:W"]}

    def check(labels: dict, match: str):
        write_relabel(path, labels)
        with pytest.raises(ValueError, match=match):
            auxiliary_labels(SAMPLES, PRIMARY, language="b", relabel=read_relabel(path), same_language=False, source=str(path))

    check({**good, "b9": ["A"]}, rf"{path}: sample 'b9' is not in the auxiliary shards \(1 such samples\)")
    check({k: v for k, v in good.items() if k != "b2"}, rf"{path}: no line for sample 'b2' of the auxiliary shards")
    check({**good, "b0": ["A"]}, r"sample 'b0' has 1 relabelled glosses for 2 glosses \('X Y'\)")
    check({**good, "b2": ["W"]}, r"sample 'b2': 'W' is neither a primary gloss nor an own class")
    path.write_text('{"name": "b0", "gloss": "A"}\n{"name": "b0", "gloss": "B"}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: sample 'b0' appears twice"):
        read_relabel(path)
    path.write_text('{"name": "b0", "gloss": "A"}\nnot json\n')
    with pytest.raises(ValueError, match=rf"{path}:2: not JSON"):
        read_relabel(path)
    path.write_text('{"name": "b0", "glosses": "A"}\n')
    with pytest.raises(ValueError, match=rf"{path}:1: expected"):
        read_relabel(path)
    with pytest.raises(FileNotFoundError, match="relabel file not found"):
        read_relabel(tmp_path / "none.jsonl")


def test_config_errors_are_named():
    with pytest.raises(ConfigError, match=r"data.alpha: Input should be greater than or equal to 0"):
        load_config(RecognitionConfig, TINY, ["data.alpha=-0.1"])
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="data.primary_fraction"):
            load_config(RecognitionConfig, TINY, [f"data.primary_fraction={bad}"])
    with pytest.raises(ConfigError, match="data.auxiliary.b: same_language merges by gloss name"):
        load_config(RecognitionConfig, TINY, ["data.auxiliary.b.shards=s", "data.auxiliary.b.relabel=r.jsonl",
                                              "data.auxiliary.b.same_language=true"])
    cfg = load_config(RecognitionConfig, TINY, ["data.auxiliary.b.shards=s"])
    assert cfg.data.alpha == 0.2 and cfg.mixes_auxiliary() and cfg.data.primary_fraction == 1.0
    assert not load_config(RecognitionConfig, TINY, ["data.auxiliary.b.shards=s", "data.alpha=0"]).mixes_auxiliary()
    assert not load_config(RecognitionConfig, TINY).mixes_auxiliary()
