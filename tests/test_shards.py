import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.shards import (
    MANIFEST,
    SCHEMA_VERSION,
    DatasetDir,
    ErrorRow,
    ShardsNotReady,
    load_receipt,
    read_shards,
    row_nbytes,
    shard_schema,
    write_block,
)
from pipelines.video_collate import VideoCollate, VideoCollateConfig


def make_row(i: int, num_frames: int, storage: str = "jpeg", frame_bytes: int = 0) -> dict:
    rng = np.random.default_rng(i)
    images = rng.integers(0, 255, (num_frames, 12, 16, 3), dtype=np.uint8)
    frames = [cv2.imencode(".jpg", f)[1].tobytes() + b"\0" * frame_bytes for f in images] if storage == "jpeg" else images
    return {
        "name": f"v{i}", "split": "train", "signer": "S", "language": "xx", "gloss": "A B", "text": None if i % 2 else f"t{i}",
        "num_frames": num_frames, "source_frames": num_frames, "frame_indices": np.arange(num_frames), "fps": 25.0,
        "height": 12, "width": 16, "frames": frames,
        "keypoints": rng.normal(size=(num_frames, 133, 3)).astype(np.float16), "keypoint_backend": "test", "warnings": "",
    }


def write_dataset(directory: DatasetDir, rows_per_block: list[list[dict]], storage: str = "jpeg", max_bytes: int = 2**30) -> dict:
    schema = shard_schema(storage, "float16")
    shards = []
    for block, rows in enumerate(rows_per_block):
        receipt = write_block(directory, "train", block, rows, [], videos=len(rows), config_hash="h", schema=schema, max_shard_bytes=max_bytes)
        shards.extend({"path": f.path, "rows": f.rows, "bytes": f.bytes} for f in receipt.files)
    manifest = {"schema_version": SCHEMA_VERSION, "config_hash": "h", "splits": {"train": {"shards": shards}}}
    directory.write_json(MANIFEST, manifest)
    return manifest


def test_blocks_split_into_size_bounded_parts_and_receipts_validate(tmp_path):
    directory = DatasetDir(str(tmp_path))
    rows = [make_row(i, 5, frame_bytes=1000) for i in range(7)]
    sizes = [row_nbytes(r) for r in rows]
    assert max(sizes) - min(sizes) < 0.1 * min(sizes)
    errors = [ErrorRow("bad", "train", "decode", "boom")]
    receipt = write_block(directory, "train", 3, rows, errors, videos=8, config_hash="abc",
                          schema=shard_schema("jpeg", "float16"), max_shard_bytes=int(2.5 * min(sizes)))
    assert [f.rows for f in receipt.files] == [2, 2, 2, 1]
    assert [f.path for f in receipt.files][:2] == ["train/train-b00003-00.parquet", "train/train-b00003-01.parquet"]
    names = [n for f in receipt.files for n in pq.read_table(tmp_path / f.path).column("name").to_pylist()]
    assert names == [f"v{i}" for i in range(7)]
    assert all((tmp_path / f.path).stat().st_size == f.bytes for f in receipt.files)
    assert not list(tmp_path.rglob("*.tmp-*"))
    loaded = load_receipt(directory, "train", 3, "abc")
    assert loaded == receipt and loaded.errors == errors and loaded.videos == 8
    assert load_receipt(directory, "train", 3, "other-hash") is None
    (tmp_path / receipt.files[1].path).write_bytes(b"truncated")
    assert load_receipt(directory, "train", 3, "abc") is None
    assert load_receipt(directory, "train", 4, "abc") is None


def test_read_shards_round_trips_ragged_keypoints_and_feeds_the_collate(ray_local, tmp_path):
    rows = [[make_row(0, 5), make_row(1, 9)], [make_row(2, 3)]]
    write_dataset(DatasetDir(str(tmp_path / "ds")), rows)
    ds = read_shards(f"file://{tmp_path}", "ds", "train")
    got = sorted(ds.take_all(), key=lambda r: r["name"])
    assert [r["name"] for r in got] == ["v0", "v1", "v2"]
    for r, ref in zip(got, [rows[0][0], rows[0][1], rows[1][0]]):
        assert r["keypoints"].dtype == np.float16 and r["keypoints"].shape == ref["keypoints"].shape
        np.testing.assert_array_equal(r["keypoints"], ref["keypoints"])
        assert [bytes(b) for b in r["frames"]] == ref["frames"]
        assert r["text"] == ref["text"]
    only = read_shards(str(tmp_path), "ds", "train", columns=["name", "num_frames"])
    assert set(only.columns()) == {"name", "num_frames"}

    collate = VideoCollate(VideoCollateConfig(height=8, width=8), train=False)
    batches = list(read_shards(str(tmp_path), "ds", "train").iter_torch_batches(batch_size=3, collate_fn=collate))
    assert len(batches) == 1
    b = batches[0]
    order = np.argsort(b["names"])
    assert sorted(b["frame_lengths"].tolist()) == [3, 5, 9] and b["frames"].shape == (3, 9, 3, 8, 8)
    for i in range(3):
        n = int(b["frame_lengths"][i])
        assert (b["frames"][i, n:] == 0).all() and (b["keypoints"][i, n:] == 0).all()
    assert [b["texts"][i] for i in order] == ["t0", None, "t2"]


def test_raw_frame_storage_round_trips_exactly(ray_local, tmp_path):
    rows = [make_row(0, 4, "raw"), make_row(1, 6, "raw")]
    write_dataset(DatasetDir(str(tmp_path / "raw")), [rows], storage="raw")
    got = sorted(read_shards(str(tmp_path), "raw", "train").take_all(), key=lambda r: r["name"])
    for r, ref in zip(got, rows):
        assert r["frames"].dtype == np.uint8
        np.testing.assert_array_equal(r["frames"], ref["frames"])
    out = VideoCollate(VideoCollateConfig(height=12, width=16), train=False)(got)
    np.testing.assert_allclose(out["frames"][1, :6].permute(0, 2, 3, 1).numpy() * 255, rows[1]["frames"], atol=1e-3)


def test_reading_an_unfinished_dataset_says_so(tmp_path):
    (tmp_path / "ds" / "train").mkdir(parents=True)
    with pytest.raises(ShardsNotReady, match="run jobs/preprocess.py"):
        read_shards(str(tmp_path), "ds", "train")
    (tmp_path / "ds" / MANIFEST).write_text(json.dumps({"schema_version": 999, "splits": {}}))
    with pytest.raises(ValueError, match="schema version 999"):
        read_shards(str(tmp_path), "ds", "train")
