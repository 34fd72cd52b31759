"""Parquet shards of preprocessed videos: writing (atomic, size-bounded, resumable), the manifest,
the errors table, and reading back as a Ray Dataset.

Layout of one preprocessed dataset (`<out>/<dataset>/`, local or any pyarrow filesystem URI):

    manifest.json                 written last, atomically: schema version, config hash, counts,
                                  shard list, vocabulary and errors paths
    vocabulary.json               gloss vocabulary of the training split (if preprocessed)
    errors.parquet                name, split, stage, message, fatal (one row per problem)
    <split>/<split>-b00003-00.parquet   shard files of block 3 (a block = a fixed run of videos
                                  in corpus order; split into parts of at most max_shard_mb)
    _progress/<split>-b00003.json block receipt: its files (rows, bytes), errors, counts

A block is complete iff its receipt exists, carries the run's config hash, and every file it lists
exists with the recorded size: a re-run skips complete blocks and rebuilds the rest, so an
interrupted run followed by a re-run writes the same bytes as an uninterrupted run.

Row schema (one row per video): see `shard_schema`. `frames` holds JPEG bytes per frame
(`frame_storage: jpeg`) or a uint8 (T, H, W, 3) tensor (`raw`); `keypoints` is a
(T, 133, 3) float16/float32 tensor (Ray's variable-shaped tensor extension type, exact round
trip), null for back-end `none`.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data._internal.tensor_extensions.arrow import ArrowVariableShapedTensorArray, ArrowVariableShapedTensorType

from pipelines.video_io import resolve_fs

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ERRORS = "errors.parquet"
VOCABULARY = "vocabulary.json"
PROGRESS = "_progress"


def shard_schema(frame_storage: Literal["jpeg", "raw"], keypoint_dtype: str) -> pa.Schema:
    frames = pa.list_(pa.binary()) if frame_storage == "jpeg" else ArrowVariableShapedTensorType(pa.uint8(), 4)
    kp = ArrowVariableShapedTensorType(pa.from_numpy_dtype(np.dtype(keypoint_dtype)), 3)
    return pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("signer", pa.string()),
            pa.field("language", pa.string()),
            pa.field("gloss", pa.string()),  # space-separated glosses as annotated
            pa.field("text", pa.string()),  # null when the corpus has no translation
            pa.field("num_frames", pa.int32()),  # stored frames
            pa.field("source_frames", pa.int32()),  # decoded frames before subsampling
            pa.field("frame_indices", pa.list_(pa.int32())),  # source index of each stored frame
            pa.field("fps", pa.float32()),  # of the stored frames (source fps / frame_stride)
            pa.field("height", pa.int32()),
            pa.field("width", pa.int32()),
            pa.field("frames", frames),
            pa.field("keypoints", kp),
            pa.field("keypoint_backend", pa.string()),
            pa.field("warnings", pa.string()),  # repairs made while decoding ("" when none)
        ]
    )


ERRORS_SCHEMA = pa.schema(
    [("name", pa.string()), ("split", pa.string()), ("stage", pa.string()), ("message", pa.string()), ("fatal", pa.bool_())]
)


@dataclass
class ErrorRow:
    """One problem with one video. fatal: the video is not in the shards."""

    name: str
    split: str
    stage: str
    message: str
    fatal: bool = True


@dataclass
class ShardFile:
    path: str  # relative to the dataset folder
    rows: int
    bytes: int


@dataclass
class BlockReceipt:
    split: str
    block: int
    config_hash: str
    videos: int  # planned videos in the block
    written: int  # rows in the shards
    frames: int
    files: list[ShardFile] = field(default_factory=list)
    errors: list[ErrorRow] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> "BlockReceipt":
        data = dict(data)
        data["files"] = [ShardFile(**f) for f in data["files"]]
        data["errors"] = [ErrorRow(**e) for e in data["errors"]]
        return cls(**data)


# ----------------------------------------------------------------------------- file helpers

class DatasetDir:
    """A preprocessed dataset's folder on any pyarrow filesystem."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.path = resolve_fs(self.uri)

    def full(self, relative: str) -> str:
        return posixpath.join(self.path, relative)

    def uri_of(self, relative: str) -> str:
        return posixpath.join(self.uri, relative)

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.full(relative)).type != pafs.FileType.NotFound

    def size(self, relative: str) -> int | None:
        info = self.fs.get_file_info(self.full(relative))
        return info.size if info.type == pafs.FileType.File else None

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write to a temporary name, then rename (atomic on local disk)."""
        final = self.full(relative)
        self.fs.create_dir(posixpath.dirname(final), recursive=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, final)

    def read_text(self, relative: str) -> str:
        with self.fs.open_input_stream(self.full(relative)) as f:
            return f.read().decode("utf-8")

    def write_json(self, relative: str, data: Any) -> None:
        self.write_bytes(relative, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def write_table(self, relative: str, table: pa.Table, **kwargs: Any) -> int:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **kwargs)
        data = sink.getvalue().to_pybytes()
        self.write_bytes(relative, data)
        return len(data)

    def remove_all(self) -> None:
        if self.fs.get_file_info(self.path).type == pafs.FileType.Directory:
            self.fs.delete_dir_contents(self.path)


# ----------------------------------------------------------------------------- writing

def rows_to_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Processed video rows (dicts) -> an Arrow table with the shard schema."""
    columns: dict[str, pa.Array] = {}
    for f in schema:
        values = [r[f.name] for r in rows]
        if f.name == "keypoints":
            if any(v is None for v in values):
                columns[f.name] = pa.nulls(len(rows), type=f.type)
            else:
                dtype = f.type.storage_type.field("data").type.value_type.to_pandas_dtype()
                columns[f.name] = ArrowVariableShapedTensorArray.from_numpy([np.asarray(v, dtype) for v in values])
        elif isinstance(f.type, ArrowVariableShapedTensorType):
            columns[f.name] = ArrowVariableShapedTensorArray.from_numpy([np.asarray(v, np.uint8) for v in values])
        elif f.name == "frames":
            columns[f.name] = pa.array([[bytes(b) for b in v] for v in values], type=f.type)
        elif f.name == "frame_indices":
            columns[f.name] = pa.array([np.asarray(v, np.int32) for v in values], type=f.type)
        else:
            columns[f.name] = pa.array([None if v is None else v for v in values], type=f.type)
    return pa.table(columns, schema=schema)


def row_nbytes(row: dict) -> int:
    frames = row["frames"]
    n = frames.nbytes if isinstance(frames, np.ndarray) and frames.dtype != object else sum(len(b) for b in frames)
    kp = row.get("keypoints")
    return n + (kp.nbytes if kp is not None else 0) + 256


def shard_file_name(split: str, block: int, part: int) -> str:
    return f"{split}/{split}-b{block:05d}-{part:02d}.parquet"


def receipt_name(split: str, block: int) -> str:
    return f"{PROGRESS}/{split}-b{block:05d}.json"


def write_block(
    directory: DatasetDir,
    split: str,
    block: int,
    rows: Sequence[dict],
    errors: Sequence[ErrorRow],
    *,
    videos: int,
    config_hash: str,
    schema: pa.Schema,
    max_shard_bytes: int,
    row_group_rows: int = 16,
    compression: str = "zstd",
) -> BlockReceipt:
    """Write one block's rows (already in corpus order) as parts of at most `max_shard_bytes`
    (estimated from the payload; at least one row per part), then its receipt. Both atomic."""
    parts: list[list[dict]] = [[]]
    size = 0
    for row in rows:
        n = row_nbytes(row)
        if parts[-1] and size + n > max_shard_bytes:
            parts.append([])
            size = 0
        parts[-1].append(row)
        size += n
    files = []
    for part, part_rows in enumerate(p for p in parts if p):
        name = shard_file_name(split, block, part)
        nbytes = directory.write_table(name, rows_to_table(part_rows, schema), row_group_size=row_group_rows, compression=compression)
        files.append(ShardFile(name, len(part_rows), nbytes))
    receipt = BlockReceipt(split, block, config_hash, videos, len(rows), int(sum(r["num_frames"] for r in rows)), files, list(errors))
    directory.write_json(receipt_name(split, block), asdict(receipt))
    return receipt


def load_receipt(directory: DatasetDir, split: str, block: int, config_hash: str) -> BlockReceipt | None:
    """The block's receipt if the block is complete and valid for `config_hash`, else None."""
    name = receipt_name(split, block)
    if not directory.exists(name):
        return None
    try:
        receipt = BlockReceipt.from_json(json.loads(directory.read_text(name)))
    except (ValueError, TypeError, KeyError):
        return None
    if receipt.config_hash != config_hash:
        return None
    if any(directory.size(f.path) != f.bytes for f in receipt.files):
        return None
    return receipt


def errors_table(errors: Iterable[ErrorRow]) -> pa.Table:
    rows = [asdict(e) for e in errors]
    return pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA)


# ----------------------------------------------------------------------------- reading

class ShardsNotReady(FileNotFoundError):
    """The dataset has no manifest: preprocessing has not finished (or never ran)."""


def dataset_uri(root: str, dataset: str | None) -> str:
    return root.rstrip("/") + "/" + dataset if dataset else root.rstrip("/")


def read_manifest(root: str, dataset: str | None = None) -> dict:
    """The manifest of `<root>/<dataset>` (or of `root` itself when dataset is None)."""
    directory = DatasetDir(dataset_uri(root, dataset))
    if not directory.exists(MANIFEST):
        raise ShardsNotReady(f"{directory.uri}/{MANIFEST}: not found — run jobs/preprocess.py (or let it finish) first")
    manifest = json.loads(directory.read_text(MANIFEST))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{directory.uri}/{MANIFEST}: schema version {manifest.get('schema_version')}, this code reads {SCHEMA_VERSION}; re-run jobs/preprocess.py --overwrite")
    return manifest


def shard_uris(root: str, dataset: str | None, splits: str | Sequence[str]) -> list[str]:
    """URIs (or local paths) of the shard files of the given split(s), in corpus order."""
    manifest = read_manifest(root, dataset)
    directory = DatasetDir(dataset_uri(root, dataset))
    out = []
    for split in [splits] if isinstance(splits, str) else list(splits):
        if split not in manifest["splits"]:
            raise KeyError(f"{directory.uri}: split {split!r} was not preprocessed (have {sorted(manifest['splits'])})")
        out.extend(directory.uri_of(f["path"]) for f in manifest["splits"][split]["shards"])
    return out


def read_shards(
    root: str,
    dataset: str | None = None,
    splits: str | Sequence[str] = "train",
    columns: Sequence[str] | None = None,
    **read_parquet_kwargs: Any,
):
    """A Ray Dataset over the shards of `<root>/<dataset>` for the given split(s).

    Only files listed in the manifest are read (never a half-written one). `columns` selects
    columns (e.g. leave out `frames` for a keypoint-only model). Rows keep their corpus order
    within a file; use `.random_shuffle()` / `iter_torch_batches(local_shuffle_buffer_size=...)`
    for training.
    """
    import ray.data

    paths = shard_uris(root, dataset, splits)
    if not paths:
        raise ValueError(f"{dataset_uri(root, dataset)}: no shards for split(s) {splits!r} (every video failed?)")
    fs, _ = resolve_fs(paths[0])
    local = [resolve_fs(p)[1] for p in paths]
    ds = ray.data.read_parquet(local, filesystem=fs, **read_parquet_kwargs)
    return ds.select_columns(list(columns)) if columns else ds


def read_errors(root: str, dataset: str | None = None) -> pa.Table:
    directory = DatasetDir(dataset_uri(root, dataset))
    with directory.fs.open_input_file(directory.full(ERRORS)) as f:
        return pq.read_table(f)


def read_shard_file(uri: str, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One shard file read without Ray Data (e.g. a stream a worker keeps open across epochs), as
    Ray's numpy batch format: one array per column, keypoints as Ray's tensors give them."""
    from ray.data.block import BlockAccessor

    fs, path = resolve_fs(uri)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f, columns=list(columns) if columns else None)
    return BlockAccessor.for_block(table).to_numpy()
