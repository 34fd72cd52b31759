import cv2
import numpy as np
import pytest
import torch

from pipelines.video_collate import (VideoCollate, VideoCollateConfig, center_box, eval_indices, random_resized_crop_box,
                                     random_temporal_indices, resample_indices)

SRC_H, SRC_W = 80, 100


def dot_clip(num_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 RGB frames with a 3x3 white dot that moves every frame, and keypoint 0 at its
    centre (score 1); keypoint 1 is absent (score 0)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, SRC_H, SRC_W, 3), np.uint8)
    frames[..., 2] = 60
    kp = np.zeros((num_frames, 133, 3), np.float32)
    for t in range(num_frames):
        x, y = int(rng.integers(20, SRC_W - 20)), int(rng.integers(20, SRC_H - 20))
        frames[t, y - 1 : y + 2, x - 1 : x + 2] = 255
        kp[t, 0] = (x, y, 1.0)
        kp[t, 1] = (5, 5, 0.0)
    return frames, kp


def rows(lengths=(9, 14, 5), jpeg=False):
    out = []
    for i, n in enumerate(lengths):
        frames, kp = dot_clip(n, i)
        if jpeg:
            stored = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes() for f in frames]
        else:
            stored = frames
        out.append({"name": f"v{i}", "gloss": "A B", "text": f"t{i}", "num_frames": n, "height": SRC_H, "width": SRC_W,
                    "frames": stored, "keypoints": kp.astype(np.float16)})
    return out


def dot_centroid(frame_chw: torch.Tensor) -> np.ndarray:
    """Centroid (x, y) of the dot, weighting by how much brighter than the background a pixel is."""
    img = frame_chw[0].numpy()  # red channel: 0 background, 1 dot
    w = np.clip(img - 0.05, 0, None)
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@pytest.mark.parametrize("jpeg", [False, True])
def test_train_crop_keeps_keypoints_on_the_same_image_content(jpeg):
    collate = VideoCollate(VideoCollateConfig(height=64, width=64, color_jitter_p=0.0), train=True, generator=3)
    batch = collate(rows(jpeg=jpeg))
    checked = 0
    for b in range(3):
        for t in range(int(batch["frame_lengths"][b])):
            x, y, s = batch["keypoints"][b, t, 0].tolist()
            if not (2 <= x <= 61 and 2 <= y <= 61):
                continue  # the crop cut the dot away
            np.testing.assert_allclose(dot_centroid(batch["frames"][b, t]), [x, y], atol=0.5)
            assert s == 1.0
            checked += 1
    assert checked > 10
    assert (batch["keypoints"][..., 1, :] == 0).all()  # absent points stay zero


def test_train_lengths_are_multiples_of_4_within_the_temporal_range_and_padding_is_exact():
    collate = VideoCollate(VideoCollateConfig(height=32, width=40), train=True, generator=0)
    seen = set()
    for _ in range(10):
        batch = collate(rows(lengths=(9, 14, 30)))
        lengths = batch["frame_lengths"]
        assert lengths.dtype == torch.int64
        assert batch["frames"].shape == (3, int(lengths.max()), 3, 32, 40) and batch["frames"].dtype == torch.float32
        for b, (n, t) in enumerate(zip(lengths.tolist(), (9, 14, 30))):
            assert n % 4 == 0 and 4 <= n and 0.5 * t - 2 <= n <= 1.5 * t + 2
            assert (batch["frames"][b, n:] == 0).all() and (batch["keypoints"][b, n:] == 0).all()
            assert (batch["frames"][b, :n].amax(dim=(1, 2, 3)) > 0.2).all()  # real content in every frame
            seen.add(n)
    assert len(seen) > 4  # lengths really vary
    assert 0.0 <= float(batch["frames"].min()) and float(batch["frames"].max()) <= 1.0


def test_eval_is_deterministic_whole_frame_and_keeps_all_frames():
    cfg = VideoCollateConfig(height=40, width=50)
    a = VideoCollate(cfg, train=False, generator=1)(rows())
    b = VideoCollate(cfg, train=False, generator=2)(rows())
    assert a["frame_lengths"].tolist() == [9, 14, 5]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["keypoints"], b["keypoints"])
    # whole frame 100x80 -> 50x40: keypoints halve (pixel-index units)
    frames, kp = dot_clip(9, 0)
    np.testing.assert_allclose(a["keypoints"][0, :9, 0, :2].numpy(), (kp[:, 0, :2] + 0.5) * 0.5 - 0.5, atol=0.02)
    expected = cv2.resize(frames[3], (50, 40), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(a["frames"][0, 3].permute(1, 2, 0).numpy() * 255, expected, atol=0.51)
    assert a["names"] == ["v0", "v1", "v2"] and a["glosses"] == ["A B"] * 3 and a["texts"] == ["t0", "t1", "t2"]


@pytest.mark.parametrize("sampling", ["even", "random"])
def test_temporal_resampling_uses_the_same_indices_for_frames_and_keypoints(sampling):
    collate = VideoCollate(VideoCollateConfig(height=80, width=100, crop_scale=(1.0, 1.0), crop_ratio=(1.25, 1.25), color_jitter_p=0,
                                              temporal_sampling=sampling), train=True, generator=5)
    batch = collate(rows(lengths=(13,)))
    n = int(batch["frame_lengths"][0])
    for t in range(n):  # crop is the whole frame: the dot and its keypoint must agree in every frame
        x, y, _ = batch["keypoints"][0, t, 0].tolist()
        np.testing.assert_allclose(dot_centroid(batch["frames"][0, t]), [x, y], atol=0.01)


def test_seeded_generators_reproduce_batches_and_column_dicts_equal_row_lists():
    cfg = VideoCollateConfig(height=32, width=32, color_jitter_p=0.5)
    a = VideoCollate(cfg, train=True, generator=7)(rows())
    b = VideoCollate(cfg, train=True, generator=np.random.default_rng(7))(rows())
    r = rows()
    columns = {k: np.array([row[k] for row in r] if k not in ("frames", "keypoints") else _objects([row[k] for row in r])) for k in r[0]}
    c = VideoCollate(cfg, train=True, generator=7)(columns)
    d = VideoCollate(cfg, train=True, generator=8)(rows())
    for other in (b, c):
        assert torch.equal(a["frames"], other["frames"]) and torch.equal(a["keypoints"], other["keypoints"])
    assert not torch.equal(a["frame_lengths"], d["frame_lengths"]) or not torch.equal(a["frames"], d["frames"])


def _objects(items):
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


def test_color_jitter_changes_colours_not_geometry():
    base = VideoCollate(VideoCollateConfig(height=80, width=100, crop_scale=(1, 1), crop_ratio=(1.25, 1.25), temporal_scale=(1, 1), color_jitter_p=0), train=True, generator=0)(rows(lengths=(8,)))
    jit = VideoCollate(VideoCollateConfig(height=80, width=100, crop_scale=(1, 1), crop_ratio=(1.25, 1.25), temporal_scale=(1, 1), color_jitter_p=1), train=True, generator=0)(rows(lengths=(8,)))
    assert not torch.allclose(base["frames"], jit["frames"])
    assert torch.equal(base["keypoints"], jit["keypoints"])


def test_normalisation_and_missing_keypoints():
    r = rows(lengths=(4, 6))
    for row in r:
        row["keypoints"] = None
    out = VideoCollate(VideoCollateConfig(height=16, width=16, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]), train=False)(r)
    assert out["keypoints"].shape == (2, 6, 133, 3) and (out["keypoints"] == 0).all()
    assert float(out["frames"][0, :4].min()) == pytest.approx(-2.0, abs=0.01)
    assert (out["frames"][0, 4:] == 0).all()


def test_resample_indices_and_crop_box_properties():
    np.testing.assert_array_equal(resample_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(resample_indices(8, 4), [1, 3, 5, 7])
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, w, h = random_resized_crop_box(80, 100, (0.7, 1.0), (0.75, 1.3), rng)
        assert 0 <= x0 and x0 + w <= 100 and 0 <= y0 and y0 + h <= 80
        assert 0.65 <= w * h / 8000 <= 1.0


def test_threaded_decoding_and_a_pickled_copy_give_the_same_batches():
    import pickle

    ref = VideoCollate(VideoCollateConfig(height=32, width=32), train=True, generator=4)(rows(jpeg=True))
    threaded = VideoCollate(VideoCollateConfig(height=32, width=32, num_threads=3), train=True, generator=4)
    copy = pickle.loads(pickle.dumps(threaded))  # e.g. shipped to a Ray Train worker
    for out in (threaded(rows(jpeg=True)), copy(rows(jpeg=True))):
        assert torch.equal(out["frames"], ref["frames"]) and torch.equal(out["keypoints"], ref["keypoints"])


def test_predecoded_rows_collate_like_jpeg_rows_and_shrinking_moves_keypoints():
    from pipelines.video_collate import predecode_row

    jpeg = rows(jpeg=True)
    decoded = [predecode_row(r) for r in jpeg]
    for r, d in zip(jpeg, decoded):
        assert d["frames"].shape == (r["num_frames"], SRC_H, SRC_W, 3) and d["frames"].dtype == np.uint8
        expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(r["frames"][2], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(d["frames"][2], expected)
    cfg = VideoCollateConfig(height=32, width=32, color_jitter_p=0.5)
    a = VideoCollate(cfg, train=True, generator=9)(jpeg)
    b = VideoCollate(cfg, train=True, generator=9)(decoded)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["keypoints"], b["keypoints"])

    small = predecode_row(jpeg[0], max_side=50)  # 100x80 -> 50x40
    assert small["frames"].shape == (9, 40, 50, 3) and (small["height"], small["width"]) == (40, 50)
    np.testing.assert_array_equal(small["frames"][4], cv2.resize(decoded[0]["frames"][4], (50, 40), interpolation=cv2.INTER_AREA))
    kp = np.asarray(jpeg[0]["keypoints"], np.float32)
    np.testing.assert_allclose(small["keypoints"][:, 0, :2], (kp[:, 0, :2] + 0.5) * 0.5 - 0.5, rtol=1e-6)
    assert (small["keypoints"][:, 1] == 0).all()  # absent points stay zero
    assert predecode_row(jpeg[0], max_side=500)["frames"].shape == (9, SRC_H, SRC_W, 3)  # never enlarged
    bad = dict(jpeg[1], frames=[jpeg[1]["frames"][0], b"not a jpeg"])
    with pytest.raises(ValueError, match="v1: frame 1 is not a decodable JPEG"):
        predecode_row(bad)


def test_plans_drawn_first_give_the_same_batch():
    cfg = VideoCollateConfig(height=32, width=32, color_jitter_p=0.5)
    ref = VideoCollate(cfg, train=True, generator=11)(rows())
    collate = VideoCollate(cfg, train=True, generator=11)
    plans = collate.plan(rows())
    assert [len(p["indices"]) for p in plans] == ref["frame_lengths"].tolist()
    out = collate(rows(), plans)
    assert torch.equal(out["frames"], ref["frames"]) and torch.equal(out["keypoints"], ref["keypoints"])
    with pytest.raises(ValueError, match="2 plans for 3 rows"):
        collate(rows(), plans[:2])


# ---- the public code's temporal augmentation, padding, evaluation clips and crops ---------------------


def test_random_temporal_sampling_drops_or_repeats_random_frames_in_order():
    """`temporal_sampling: random` as the public code: a length from the integers in
    [int(0.5 T), int(1.5 T)] rounded up to a multiple of 4; shorter clips are a random subset of the
    frames (no frame twice), longer ones every frame plus random repeats; order kept."""
    rng = np.random.default_rng(0)
    lengths, uneven = set(), 0
    for _ in range(300):
        idx = random_temporal_indices(40, (0.5, 1.5), 4, 400, rng)
        n = len(idx)
        assert n % 4 == 0 and 20 <= n <= 60 and idx.dtype == np.int64
        assert (np.diff(idx) >= 0).all()  # in order
        if n <= 40:
            assert len(np.unique(idx)) == n  # frames dropped, none repeated
        else:
            assert set(idx.tolist()) == set(range(40))  # every frame kept, some repeated
        uneven += not np.array_equal(idx, resample_indices(40, n))
        lengths.add(n)
    assert lengths == set(range(20, 61, 4))  # every multiple of 4 in range is drawn
    assert uneven > 250  # random, not evenly spaced (which the same length with "even" gives)
    capped = [random_temporal_indices(300, (0.5, 1.5), 4, 100, rng) for _ in range(50)]
    assert all(len(i) == 100 and len(np.unique(i)) == 100 for i in capped)  # int(0.5 T) > max_frames: 100 distinct frames
    assert len(random_temporal_indices(2, (0.5, 1.5), 4, 400, rng)) == 4  # at least one multiple


def test_random_sampling_of_a_clip_keeps_frames_and_keypoints_together_in_order():
    collate = VideoCollate(VideoCollateConfig(height=80, width=100, crop_scale=(1.0, 1.0), crop_ratio=(1.25, 1.25),
                                              color_jitter_p=0, temporal_sampling="random", temporal_scale=(0.5, 0.5)),
                           train=True, generator=3)
    row = rows(lengths=(21,))[0]
    source = np.asarray(row["keypoints"], np.float32)[:, 0, :2]
    batch = collate([row])
    assert int(batch["frame_lengths"][0]) == 12  # int(0.5 x 21) = 10, rounded up to 12
    picked = []
    for t in range(12):
        xy = batch["keypoints"][0, t, 0, :2].numpy()
        k = int(np.argmin(np.abs(source - xy).sum(1)))
        np.testing.assert_allclose(source[k], xy, atol=1e-3)
        np.testing.assert_allclose(dot_centroid(batch["frames"][0, t]), xy, atol=0.01)
        picked.append(k)
    assert picked == sorted(set(picked)) and picked != resample_indices(21, 12).tolist()


def test_replicate_padding_repeats_the_last_frame_and_keypoints_after_jitter():
    collate = VideoCollate(VideoCollateConfig(height=32, width=40, pad="replicate", color_jitter_p=1.0), train=True, generator=1)
    batch = collate(rows(lengths=(9, 30)))
    lengths = batch["frame_lengths"].tolist()
    assert lengths[0] < lengths[1]
    n = lengths[0]
    for t in range(n, batch["frames"].shape[1]):
        assert torch.equal(batch["frames"][0, t], batch["frames"][0, n - 1])
        assert torch.equal(batch["keypoints"][0, t], batch["keypoints"][0, n - 1])
    zero = VideoCollate(VideoCollateConfig(height=32, width=40, color_jitter_p=1.0), train=True, generator=1)(rows(lengths=(9, 30)))
    assert torch.equal(zero["frames"][0, :n], batch["frames"][0, :n]) and (zero["frames"][0, n:] == 0).all()


def test_public_evaluation_clips_centre_cut_and_multiple_of_4():
    np.testing.assert_array_equal(eval_indices(410, 400, "center", 4), np.arange(5, 405))  # centre 400 of 410
    np.testing.assert_array_equal(eval_indices(403, 400, "center", 4), np.arange(1, 401))
    np.testing.assert_array_equal(eval_indices(13, 400, "center", 4), np.arange(12))  # trailing frame dropped
    np.testing.assert_array_equal(eval_indices(3, 400, "center", 4), np.arange(3))  # too short to cut
    np.testing.assert_array_equal(eval_indices(410, 400), resample_indices(410, 400))  # the default: even resampling
    np.testing.assert_array_equal(eval_indices(13, 400), np.arange(13))
    cfg = VideoCollateConfig(height=40, width=50, eval_length_multiple=4, eval_long_clips="center", max_frames=12)
    out = VideoCollate(cfg, train=False)(rows(lengths=(9, 14, 5)))
    assert out["frame_lengths"].tolist() == [8, 12, 4]  # 14 frames: the centre 12 (frames 1-12)
    ref = VideoCollate(VideoCollateConfig(height=40, width=50), train=False)(rows(lengths=(9, 14, 5)))
    assert torch.equal(out["frames"][0, :8], ref["frames"][0, :8]) and torch.equal(out["frames"][1, :12], ref["frames"][1, 1:13])
    assert torch.equal(out["crop_zoom"], torch.ones(3, 2))


def test_centre_crop_fraction_and_crop_zoom():
    assert center_box(320, 320, 224, 224, 0.84375) == (25, 25, 270, 270)  # CSL-Daily: the public 270 px of 320
    assert center_box(80, 100, 40, 40) == (10, 0, 80, 80) == center_box(80, 100, 40, 40, 1.0)
    cfg = VideoCollateConfig(height=40, width=40, eval_crop="center", eval_crop_fraction=0.5)
    out = VideoCollate(cfg, train=False)(rows(lengths=(9,)))
    kp = np.asarray(rows(lengths=(9,))[0]["keypoints"], np.float32)[:, 0, :2]
    np.testing.assert_allclose(out["keypoints"][0, :, 0, :2].numpy(), (kp + 0.5 - [30, 20]) * (40 / 40) - 0.5, atol=1e-3)
    # training: crop_zoom = evaluation box / crop box, per axis (the evaluation box here is 40x40 px)
    collate = VideoCollate(cfg, train=True, generator=2)
    plans = collate.plan(rows())
    batch = collate(rows(), plans)
    for p, zoom in zip(plans, batch["crop_zoom"].tolist()):
        assert zoom == pytest.approx([40 / p["box"][2], 40 / p["box"][3]])
    assert len({tuple(z) for z in batch["crop_zoom"].tolist()}) == 3
