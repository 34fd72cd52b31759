"""jobs/preprocess.py end to end on a real local Ray: layouts, keypoints, errors, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from common.config import ConfigError
from jobs.preprocess import PreprocessConfig, main, run
from pipelines.shards import read_errors, read_manifest
from video_fixtures import H, W, make_frames, make_keypoints, write_corpus, write_frame_folder, write_mp4, zip_frame_folders

REPO = Path(__file__).resolve().parents[1]
FAST = {"decode_cpus": 0.5, "encode_cpus": 0.5, "keypoint_cpus": 0.5, "keypoint_actors": 1, "videos_per_batch": 2}


def config(corpus_root: Path, out: Path | str, **over) -> PreprocessConfig:
    data = {
        "name": "syn_{language}",
        "out_dir": str(out),
        "corpus": {"name": "synthetic", "format": "synthetic", "language": "aaa", "root": str(corpus_root)},
        "splits": ["train", "dev"],
        "frames": {"resize": "fixed", "width": 24, "height": 20},
        "keypoints": {"backend": "groundtruth", "dtype": "float32"},
        "shards": {"videos_per_block": 2, "jpeg_quality": 95},
        "resources": FAST,
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return PreprocessConfig.model_validate(data)


def shard_bytes(dataset: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dataset)): p.read_bytes() for p in sorted(dataset.glob("*/*.parquet"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    names = write_corpus(root, "aaa", {"train": 5, "dev": 2})
    return root, names


def test_synthetic_corpus_end_to_end_with_groundtruth_keypoints(ray_local, corpus, tmp_path):
    root, names = corpus
    [result] = run(config(root, tmp_path))
    ds = tmp_path / "syn_aaa"
    manifest = read_manifest(str(tmp_path), "syn_aaa")
    assert manifest["splits"]["train"]["videos"] == 5 and manifest["splits"]["dev"]["written"] == 2
    assert [f["path"] for f in manifest["splits"]["train"]["shards"]] == [
        "train/train-b00000-00.parquet", "train/train-b00001-00.parquet", "train/train-b00002-00.parquet"]
    assert manifest["vocabulary"] == "vocabulary.json" and json.loads((ds / "vocabulary.json").read_text())["glosses"] == ["G0", "G1", "G2"]
    assert read_errors(str(tmp_path), "syn_aaa").num_rows == 0 and result.error_share == 0
    table = pq.read_table(ds / "train" / "train-b00001-00.parquet")
    assert table.column("name").to_pylist() == names["train"][2:4]
    row = table.slice(0, 1).to_pylist()[0]
    n = 12 + 2 % 3
    assert (row["num_frames"], row["height"], row["width"], row["fps"]) == (n, 20, 24, 25.0)
    assert row["gloss"] == "G2 G0" and row["text"] == "text 2" and row["signer"] == "S0" and row["language"] == "aaa"
    assert row["keypoint_backend"] == "groundtruth" and len(row["frames"]) == n
    kp = table.column("keypoints").chunk(0).to_numpy(zero_copy_only=False)[0]
    truth = make_keypoints(n, 2)
    assert kp.shape == (n, 133, 3) and kp.dtype == np.float32
    # stored frames are 24x20 from 48x40: x' = (x + 0.5) / 2 - 0.5
    np.testing.assert_allclose(kp[:, 0, :2], (truth[:, 0, :2] + 0.5) * 0.5 - 0.5, atol=1e-5)
    np.testing.assert_allclose(kp[:, 9], np.c_[(truth[:, 9, :2] + 0.5) * 0.5 - 0.5, truth[:, 9, 2]], atol=1e-5)
    np.testing.assert_array_equal(np.delete(kp, [0, 9], axis=1), 0)
    frame = cv2.imdecode(np.frombuffer(row["frames"][0], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    expected = cv2.resize(make_frames(n, 2)[0], (24, 20), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.astype(int) - expected).mean() < 6  # mp4v + JPEG


def test_bad_inputs_become_error_rows_and_the_exit_code_follows_the_error_share(ray_local, tmp_path):
    lang = tmp_path / "c" / "aaa"
    good = make_frames(10)
    write_mp4(lang / "v" / "ok.mp4", good)
    write_mp4(lang / "v" / "short.mp4", good[:5])
    (lang / "v" / "corrupt.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    write_frame_folder(lang / "gray" / "1", good[:10])
    cv2.imwrite(str(lang / "gray" / "1" / "images0001.png"), cv2.cvtColor(good[0], cv2.COLOR_RGB2GRAY))
    (lang / "empty" / "1").mkdir(parents=True)
    zip_frame_folders({"zipped": good}, lang / "tmp.zip")
    raw = bytearray((lang / "tmp.zip").read_bytes())
    raw[200] ^= 0xFF  # inside the first member's data
    (lang / "zipped.zip").write_bytes(bytes(raw))
    rows = ["name|video|start|end|speaker|orth|translation"]
    for name, video in [("ok", "v/ok.mp4"), ("missing", "v/missing.mp4"), ("corrupt", "v/corrupt.mp4"), ("short", "v/short.mp4"),
                        ("gray", "gray/1/*.png"), ("empty", "empty/1/*.png"), ("zipped", "zipped.zip@images/zipped")]:
        rows.append(f"{name}|{video}|0|9|S|A B|t")
    (lang / "aaa.train.corpus.csv").write_text("\n".join(rows) + "\n")
    cfg = config(tmp_path / "c", tmp_path / "out", splits=["train"], keypoints={"backend": "none"}, video={"pattern": "{video}"})
    [result] = run(cfg)
    errors = {r["name"]: r for r in read_errors(str(tmp_path / "out"), "syn_aaa").to_pylist()}
    assert set(errors) == {"missing", "corrupt", "short", "gray", "empty", "zipped"}
    assert (errors["missing"]["stage"], errors["missing"]["fatal"]) == ("locate", True)
    assert "cannot open video" in errors["corrupt"]["message"]
    assert errors["short"]["stage"] == "check" and "annotation says 10" in errors["short"]["message"]
    assert (errors["gray"]["fatal"], errors["gray"]["message"]) == (False, "grayscale frames converted to RGB")
    assert "zero frames" in errors["empty"]["message"]
    assert "unreadable archive member" in errors["zipped"]["message"]
    manifest = read_manifest(str(tmp_path / "out"), "syn_aaa")
    assert manifest["splits"]["train"]["written"] == 2 and manifest["splits"]["train"]["fatal_errors"] == 5
    assert manifest["keypoint_backend"] == "none"
    table = pq.read_table(tmp_path / "out" / "syn_aaa" / "train" / "train-b00000-00.parquet")
    assert table.column("name").to_pylist() == ["ok"] and table.column("keypoints").null_count == 1
    assert result.error_share == pytest.approx(5 / 7)
    # The same through main(): the run finishes (up to date), the exit code reflects the share.
    cfg_file = tmp_path / "cfg.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["--config", str(cfg_file)]) == 1
    assert main(["--config", str(cfg_file), "max_error_share=0.8"]) == 0


def test_rerun_is_a_no_op_a_changed_config_is_refused_and_interrupted_runs_resume_to_identical_shards(ray_local, corpus, tmp_path):
    root, _ = corpus
    cfg = config(root, tmp_path / "a")
    run(cfg)
    ds = tmp_path / "a" / "syn_aaa"
    reference = shard_bytes(ds)
    mtimes = {p: p.stat().st_mtime_ns for p in ds.rglob("*") if p.is_file()}
    [again] = run(cfg)
    assert again.up_to_date and {p: p.stat().st_mtime_ns for p in ds.rglob("*") if p.is_file()} == mtimes
    with pytest.raises(ConfigError, match="different config"):
        run(config(root, tmp_path / "a", shards__jpeg_quality=50))

    # Simulate an interruption: manifest never written, one block without receipt, one shard
    # half-written under its final name, a stray temporary file.
    (ds / "manifest.json").unlink()
    (ds / "_progress" / "train-b00001.json").unlink()
    shard = ds / "train" / "train-b00002-00.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    (ds / "train" / "train-b00000-00.parquet.tmp-deadbeef").write_bytes(b"partial")
    [resumed] = run(cfg)
    assert not resumed.up_to_date
    assert resumed.splits["train"].resumed == 2 and resumed.splits["dev"].resumed == 2  # block 0 of train and of dev were kept
    assert shard_bytes(ds) == reference
    assert read_manifest(str(tmp_path / "a"), "syn_aaa")["splits"]["train"]["written"] == 5

    # --overwrite rebuilds from scratch with the new config
    [rebuilt] = run(config(root, tmp_path / "a", shards__jpeg_quality=50), overwrite=True)
    assert rebuilt.splits["train"].resumed == 0 and shard_bytes(ds) != reference


def test_shards_of_a_changed_corpus_are_refused_not_reused(ray_local, corpus, tmp_path):
    """Same preprocessing config, but the corpus was regenerated (a synthetic corpus's generator
    hash changes while every annotation stays) or re-annotated: the old shards are stale."""
    root = tmp_path / "corpus"
    shutil.copytree(corpus[0], root)
    manifest = json.loads((root / "synthetic.json").read_text())

    def generated_with(config_hash: str) -> None:
        (root / "synthetic.json").write_text(json.dumps({**manifest, "config_hash": config_hash}))

    generated_with("1111111111111111")
    cfg = config(root, tmp_path / "out")
    [first] = run(cfg)
    assert not first.up_to_date
    assert run(cfg)[0].up_to_date
    shutil.copytree(root, tmp_path / "moved")  # the same corpus elsewhere keeps its shards
    assert run(config(tmp_path / "moved", tmp_path / "out"))[0].up_to_date
    generated_with("2222222222222222")
    with pytest.raises(ConfigError, match="different corpus"):
        run(cfg)
    generated_with("1111111111111111")
    assert run(cfg)[0].up_to_date
    annotation = root / "aaa" / "aaa.train.corpus.csv"
    annotation.write_text(annotation.read_text().replace("text 0", "text zero"))
    with pytest.raises(ConfigError, match="different corpus"):
        run(cfg)
    [rebuilt] = run(cfg, overwrite=True)
    assert rebuilt.splits["train"].resumed == 0
    table = pq.read_table(tmp_path / "out" / "syn_aaa" / "train").to_pylist()
    assert "text zero" in {row["text"] for row in table}


def test_frame_folders_zip_archives_and_file_uris(ray_local, tmp_path):
    """PHOENIX-2014T official CSV + frame folders, the public code's zip, via file:// URIs."""
    frames = {f"vid{i}": make_frames(8 + i, i) for i in range(3)}
    for name, f in frames.items():
        write_frame_folder(tmp_path / "features" / "fullFrame-210x260px" / "dev" / name / "1", f)
    zip_frame_folders({f"dev/{n}": f for n, f in frames.items()}, tmp_path / "phoenix-videos.zip")
    csv = tmp_path / "PHOENIX-2014-T.dev.corpus.csv"
    csv.write_text("name|video|start|end|speaker|orth|translation\n" + "".join(
        f"{n}|{n}/1/*.png|-1|-1|Signer01|A B|ein satz\n" for n in frames))
    corpus = {"name": "phoenix2014t", "format": "phoenix2014t_csv", "language": "dgs", "files": {"dev": str(csv)},
              "video_root": f"file://{tmp_path}/features/fullFrame-210x260px/{{split}}"}
    common = dict(corpus=corpus, splits=["dev"], keypoints={"backend": "none"}, frames={"resize": "none"}, name="{corpus}")
    run(config(tmp_path, f"file://{tmp_path}/out_folders", **common))
    run(config(tmp_path, str(tmp_path / "out_zip"), video={"root": str(tmp_path / "phoenix-videos.zip"), "pattern": "images/{split}/{name}"}, **common))
    a = pq.read_table(tmp_path / "out_folders" / "phoenix2014t" / "dev" / "dev-b00000-00.parquet")
    b = pq.read_table(tmp_path / "out_zip" / "phoenix2014t" / "dev" / "dev-b00000-00.parquet")
    assert a.column("name").to_pylist() == ["vid0", "vid1"] and a.column("num_frames").to_pylist() == [8, 9]
    assert a.column("frames").to_pylist() == b.column("frames").to_pylist()  # same pixels -> same JPEG bytes
    assert a.column("text").to_pylist() == ["ein satz"] * 2 and a.column("height").to_pylist() == [H, H]
    first = cv2.imdecode(np.frombuffer(a.column("frames")[1][0].as_py(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(first.astype(int) - frames["vid1"][0]).mean() < 3


@pytest.mark.slow
def test_killing_the_job_and_rerunning_gives_the_same_shards(ray_local, tmp_path):
    """A real interruption: SIGKILL the job (its own local Ray) after its first block, re-run."""
    root = tmp_path / "corpus"
    write_corpus(root, "aaa", {"train": 60, "dev": 4})  # enough blocks that the kill lands mid-run
    cfg = config(root, tmp_path / "killed", shards__videos_per_block=1)
    import yaml

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    import tempfile

    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO),
               RAY_TMPDIR=tempfile.mkdtemp(prefix="sbk", dir="/tmp"))  # its own Ray, apart from the fixture's
    cmd = [sys.executable, str(REPO / "jobs" / "preprocess.py"), "--config", str(cfg_file), "ray.address=local", "ray.num_cpus=2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = tmp_path / "killed" / "syn_aaa" / "_progress"
    deadline = time.time() + 240
    while time.time() < deadline and not (progress.exists() and any(progress.iterdir())):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "syn_aaa" / "manifest.json").exists(), "the job finished before it could be killed"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    [total] = [line.split() for line in rerun.stdout.splitlines() if line.startswith("syn_aaa") and line.split()[1] == "all"]
    assert 1 <= int(total[4]) < 64  # some videos were resumed from the killed run, the rest processed
    run(config(root, tmp_path / "clean", shards__videos_per_block=1))  # uninterrupted reference (in-process Ray)
    assert shard_bytes(tmp_path / "killed" / "syn_aaa") == shard_bytes(tmp_path / "clean" / "syn_aaa")
