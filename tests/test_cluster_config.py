"""cluster.yaml: valid for Ray's cluster launcher (its own schema, offline), the same pinned versions
as a laptop install, and the shared storage every job writes to (training.ray_cluster.storage_path)."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from common.config import load_config
from training.ray_cluster import STORAGE_ENV, storage_path

REPO = Path(__file__).resolve().parents[1]


def _raw() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def _validated(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _start_env(command: str) -> dict[str, str]:
    """`VAR=value` assignments right before `ray start` in a start command."""
    words = shlex.split(command.split(";")[-1])
    return dict(w.split("=", 1) for w in words[: words.index("ray")])


def test_cluster_yaml_passes_rays_schema_and_the_validator_is_not_a_no_op():
    config = _validated(_raw())
    assert config["provider"]["type"] == "aws" and config["head_node_type"] == "head"

    unknown = _raw()
    unknown["available_node_types"]["gpu_spot"]["min_worker"] = 0
    with pytest.raises(Exception, match="min_worker"):
        _validated(unknown)
    wrong_type = _raw()
    wrong_type["available_node_types"]["gpu_spot"]["resources"]["GPU"] = "one"
    with pytest.raises(Exception, match="'one' is not of type 'integer'"):
        _validated(wrong_type)
    too_many = _raw()
    too_many["available_node_types"]["gpu_spot"]["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="min_workers"):
        _validated(too_many)


def test_cpu_head_and_autoscaling_gpu_workers():
    types = _validated(_raw())["available_node_types"]
    assert types["head"]["resources"].get("GPU", 0) == 0 and types["head"]["max_workers"] == 0
    gpu = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert set(gpu) == {"gpu_spot", "gpu_8x"}
    for t in gpu.values():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1
    assert types["gpu_spot"]["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert types["gpu_8x"]["resources"]["GPU"] == 8  # the full recipes' 8 DDP workers fit one node
    assert "InstanceMarketOptions" not in types["head"]["node_config"]  # the head is never reclaimed


def test_setup_installs_the_pinned_versions_with_the_cuda_build_of_torch():
    commands = _validated(_raw())["head_setup_commands"]
    setup = next(c for c in commands if "scripts/setup.sh" in c)
    torch_spec = re.search(r"TORCH_SPEC=(\S+)", setup).group(1)
    default_spec = re.search(r"TORCH_SPEC=\$\{TORCH_SPEC:-(\S+?)\}", (REPO / "scripts/setup.sh").read_text()).group(1)
    assert torch_spec == default_spec == "torch==2.13.0"
    assert re.search(r"TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+", setup)
    # scripts/setup.sh installs the project itself, so Ray and the rest come at pyproject.toml's pins
    assert '-e ".[dev]"' in (REPO / "scripts/setup.sh").read_text()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "ray[data,train,tune,default]==2.60.0" in deps
    torch_range = next(d for d in deps if d.startswith("torch"))
    assert torch_range == "torch>=2.13,<2.15"  # 2.13.0 lies in it
    # every node runs the venv's `ray` and `python` (the job's interpreter)
    assert any("signbridge/.venv/bin:$PATH" in c for c in commands)


def test_every_node_mounts_the_storage_jobs_write_to(monkeypatch):
    config = _validated(_raw())
    mount = next(c for c in config["head_setup_commands"] if "s3fs" in c and "mountpoint" in c)
    mount_point = re.search(r"mountpoint -q (\S+)", mount).group(1)
    assert mount in config["worker_setup_commands"]  # setup_commands run on every node
    for start in (config["head_start_ray_commands"][-1], config["worker_start_ray_commands"][-1]):
        assert _start_env(start) == {STORAGE_ENV: mount_point, "RAY_AUTH_MODE": "token"}
    assert config["file_mounts"]["~/signbridge"] == "."
    assert {".git", ".venv", "outputs"} <= set(config["rsync_exclude"])

    from jobs.preprocess import PreprocessConfig
    from jobs.train_recognition import RecognitionConfig
    from jobs.train_recognition import absolute_paths as recognition_paths
    from jobs.train_translation import TranslationConfig
    from jobs.train_translation import absolute_paths as translation_paths

    monkeypatch.setenv(STORAGE_ENV, mount_point)
    monkeypatch.setenv("SIGNBRIDGE_DATA", "/data")
    g2t = translation_paths(load_config(TranslationConfig, REPO / "configs/translation/tiny.yaml"))
    assert g2t.out_dir == f"{mount_point}/outputs/translation"
    s2g = recognition_paths(load_config(RecognitionConfig, REPO / "configs/recognition/synthetic_tiny.yaml"))
    assert (s2g.out_dir, s2g.data.shards) == (f"{mount_point}/outputs/recognition", f"{mount_point}/outputs/shards/tiny")
    pre = load_config(PreprocessConfig, REPO / "configs/data/synthetic_tiny.yaml")
    assert storage_path(pre.out_dir).startswith(f"{mount_point}/outputs/")


def test_storage_path_rules(monkeypatch, tmp_path):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert storage_path("outputs/x") == str(tmp_path / "outputs/x")
    assert storage_path("/abs/x") == "/abs/x" and storage_path("s3://b/x") == "s3://b/x"
    monkeypatch.setenv(STORAGE_ENV, "/mnt/sb/")
    assert storage_path("outputs/../runs/x") == "/mnt/sb/runs/x" and storage_path("/abs/x") == "/abs/x"
    monkeypatch.setenv(STORAGE_ENV, "s3://bucket/prefix/")
    assert storage_path("outputs/shards") == "s3://bucket/prefix/outputs/shards"
