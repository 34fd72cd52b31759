"""HRNet (mmpose, COCO-WholeBody) back-end with random weights: shapes, scores, batching, actors.

Needs `bash scripts/install_keypoints.sh hrnet`. The small HRNet-w32 256x192 config keeps the CPU
time low; the paper setting (w48 384x288) is the default config and only slower.
"""

import importlib.util
import sys

import numpy as np
import pytest

from pipelines.keypoints.base import HRNetConfig, KeypointConfig, KeypointStage, VideoFrames
from pipelines.video_io import Geometry

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mmpose") is None or importlib.util.find_spec("mmcv") is None,
    reason="mmpose/mmcv not installed: run `bash scripts/install_keypoints.sh hrnet`",
)
SMALL = "td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192.py"


def videos(lengths=(3, 2), h=60, w=48):
    rng = np.random.default_rng(0)
    return [VideoFrames(f"v{i}", rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8), np.arange(n), Geometry()) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def estimator():
    import torch

    from pipelines.keypoints.hrnet import HRNetWholeBody

    torch.manual_seed(0)  # the random weights: the same whatever ran before (tests that set the global RNG)
    return HRNetWholeBody(HRNetConfig(config=SMALL, checkpoint=None, device="cpu", num_threads=1), frame_batch_size=2)


def test_random_hrnet_gives_133_points_per_frame_with_scores_in_range(estimator):
    vids = videos()
    out = estimator.estimate(vids)
    assert [k.shape for k in out] == [(3, 133, 3), (2, 133, 3)]
    for k in out:
        assert k.dtype == np.float32 and np.isfinite(k).all()
        assert ((k[..., 2] >= 0) & (k[..., 2] <= 1)).all()
        present = k[..., 2] > 0
        assert present.any()
        # top-down on the whole-frame box (padded x1.25 to the model's 3:4 aspect): points land
        # inside that padded box around the 48x60 frame
        assert (k[present][:, 0] >= -15).all() and (k[present][:, 0] <= 63).all()
        assert (k[present][:, 1] >= -20).all() and (k[present][:, 1] <= 80).all()
    assert "torchvision" not in sys.modules  # the inference path never needed it


def test_batching_does_not_change_results(estimator):
    vids = videos()
    batched = np.concatenate(estimator.estimate(vids))
    estimator.frame_batch_size = 1
    try:
        single = np.concatenate([estimator.estimate([v])[0] for v in vids])
    finally:
        estimator.frame_batch_size = 2
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_missing_checkpoint_and_wrong_config_are_reported():
    from pipelines.keypoints.hrnet import HRNetWholeBody, resolve_config

    with pytest.raises(FileNotFoundError, match="not found"):
        HRNetWholeBody(HRNetConfig(config=SMALL, checkpoint="/nope/hrnet.pth", device="cpu"))
    with pytest.raises(FileNotFoundError, match="neither a file nor"):
        resolve_config("no-such-config.py")


def test_hrnet_actor_pool_in_ray_data(ray_local):
    """The actor path: the model loads once per actor and keypoints come back per video."""
    import ray

    vids = videos(lengths=(2, 3, 1))
    rows = [{"name": v.name, "frames": v.frames, "frame_indices": v.indices, "geometry": np.array([0, 0, 1, 1], np.float64),
             "keypoints_path": "", "error_stage": "" if i != 1 else "decode", "error_message": ""} for i, v in enumerate(vids)]
    cfg = KeypointConfig(backend="hrnet", dtype="float16", frame_batch_size=4, hrnet=HRNetConfig(config=SMALL, device="cpu", num_threads=1))
    ds = ray.data.from_items(rows).map_batches(
        KeypointStage, fn_constructor_kwargs={"config": cfg.model_dump()}, batch_size=2, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5,
    )
    out = sorted(ds.take_all(), key=lambda r: r["name"])
    assert [r["keypoints"].shape for r in out] == [(2, 133, 3), (0, 133, 3), (1, 133, 3)]  # v1 carried an error: skipped
    assert out[0]["keypoints"].dtype == np.float16 and out[1]["error_stage"] == "decode"
    assert all(r["keypoint_seconds"] >= 0 for r in out)
