"""Shared fixtures: where the real annotation data is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    candidates = [os.environ.get("SIGNBRIDGE_DATA"), REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "phoenix-2014t").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real annotation files (../shared/data or $SIGNBRIDGE_DATA); skips when absent."""
    path = _real_data_dir()
    if path is None:
        pytest.skip("real annotation data not found: set SIGNBRIDGE_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance for the whole test session (quiet, small object store)."""
    import tempfile

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # RAY_TMPDIR must be short: Unix socket paths are limited to 107 bytes.
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="sbray", dir="/tmp"))
    import ray
    from ray.data import DataContext

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        logging_level="ERROR",
        _temp_dir=os.environ["RAY_TMPDIR"],
    )
    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on the shared 2-core machine two OpenMP threads under load are ~40x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_synthetic(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny synthetic two-language corpus (configs/synthesize/tiny.yaml) and its shards
    (configs/data/synthetic_tiny.yaml: synthetic-sgsl-a, synthetic-sgsl-b), made once per session:
    (corpus root, shards root)."""
    from common.config import load_config
    from jobs.preprocess import PreprocessConfig, run as preprocess
    from jobs.synthesize import SynthesizeConfig, synthesize

    root = tmp_path_factory.mktemp("tiny_synthetic")
    corpus, shards = root / "corpus", root / "shards"
    synthesize(load_config(SynthesizeConfig, REPO / "configs/synthesize/tiny.yaml", [f"out_dir={corpus}"]), progress=False)
    preprocess(load_config(PreprocessConfig, REPO / "configs/data/synthetic_tiny.yaml",
                           [f"out_dir={shards}", f"corpus.root={corpus}"]))
    return corpus, shards
