"""Connect a job to Ray: the cluster under `ray job submit`, or a private local instance.

Why a private local instance gets its own dashboard on a free port: Ray Train (2.60) runs a
detached `PlacementGroupCleaner` that asks the State API every second whether the train
controller is alive, and removes the run's placement group (killing the workers) when it is not
found. Without an explicit API server address the State API goes to the most recently started
Ray instance on the machine, so a second local instance (a preprocessing job, a test) made a
healthy training run look dead and killed it. Pointing RAY_API_SERVER_ADDRESS at this
instance's own dashboard before Ray starts (its processes inherit the variable) prevents that.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field

from common.config import StrictModel


class ActorResources(StrictModel):
    """Ray Data actors holding a model (a job's `resources` section); they never change the output."""

    actors: int = Field(1, ge=1)  # model replicas working in parallel
    cpus_per_actor: float = Field(1.0, ge=0)
    gpus_per_actor: float = Field(1.0, ge=0)  # used only when the cluster has GPUs
    torch_threads: int | None = 1  # intra-op threads per CPU actor; None: torch's default


# Ray Train runs the training loop in a worker thread, whose glibc arena hands every tensor above
# the (dynamic) mmap threshold back to the kernel when freed: each step then page-faults its
# activations in again (40 % system time in the demo's workers). A fixed 32 MiB threshold (the
# maximum) and no trimming below 1 GiB keep that memory in the process: 23 % less time per step
# in a thread (docs/PERFORMANCE.md). Workers inherit these from the driver's environment.
TRAINING_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}


STORAGE_ENV = "SIGNBRIDGE_STORAGE"


def storage_path(path: str) -> str:
    """Where a job's output path lives: a relative path goes under $SIGNBRIDGE_STORAGE when set (the
    shared storage every node of a cluster mounts, cluster.yaml), else under the current directory;
    absolute paths and URIs (`s3://...`) are kept. Under `ray job submit` the current directory is a
    temporary copy of the working tree, so cluster jobs need the variable or absolute paths."""
    if "://" in path or Path(path).is_absolute():
        return path
    base = os.environ.get(STORAGE_ENV)
    if not base:
        return str(Path(path).resolve())
    return base.rstrip("/") + "/" + path if "://" in base else str((Path(base) / path).resolve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_ray(address: str | None = None, *, num_cpus: int | None = None, job_priority: bool = False, **kwargs: Any) -> None:
    """ray.init for jobs. address None: RAY_ADDRESS if set (as under `ray job submit`), else a
    private local instance (never someone else's `ray start` cluster by accident).

    job_priority: local workers keep the driver's niceness (Ray starts them at 15), OpenMP
    threads sleep instead of spinning when cores are shared, and glibc malloc keeps freed memory
    (`TRAINING_MALLOC_ENV`); for training jobs, whose workers are the job's main work. Each can
    be overridden through the environment.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        if job_priority:
            os.environ.setdefault("RAY_worker_niceness", "0")
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            for key, value in TRAINING_MALLOC_ENV.items():
                os.environ.setdefault(key, value)
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    kwargs.setdefault("logging_level", "WARNING")
    ray.init(address=address, **kwargs)
