"""Estimator-like keypoints from exact ones (pipelines/keypoints/estimator_noise.py): hand-computed
cases for each error term, determinism per video, and the statistics that compare estimators."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.keypoints.estimator_noise import (
    HANDS,
    EstimatorNoiseConfig,
    apply_estimator_noise,
    error_statistics,
    hand_lost,
    point_speed,
)

LEFT, RIGHT = HANDS


def still_signer(frames: int = 200) -> np.ndarray:
    """(T, 133, 3): upper body, face and hands present and still; hands far apart and from the face."""
    kp = np.zeros((frames, 133, 3), np.float32)
    kp[:, :11] = (60.0, 40.0, 1.0)
    kp[:, 23:91] = (60.0, 20.0, 1.0)
    kp[:, LEFT] = (20.0, 100.0, 1.0)
    kp[:, RIGHT] = (100.0, 100.0, 1.0)
    kp[:, LEFT, 0] += np.arange(21) * 0.5  # a hand 10 px wide
    kp[:, RIGHT, 0] += np.arange(21) * 0.5
    return kp


def test_point_speed_is_the_mean_of_the_steps_before_and_after():
    kp = np.zeros((4, 133, 3), np.float32)
    kp[:, 0, 2] = 1
    kp[:, 0, 0] = [0, 3, 3, 7]  # steps 3, 0, 4
    np.testing.assert_allclose(point_speed(kp)[:, 0], [3, 1.5, 2, 4])
    kp[2, 0, 2] = 0  # absent in frame 2: its steps count 0
    np.testing.assert_allclose(point_speed(kp)[:, 0], [3, 1.5, 0, 0])


def test_no_error_keeps_the_points_and_scores_the_present_ones_1():
    kp = still_signer(5)
    kp[:, 11:23] = 0  # legs absent
    out = apply_estimator_noise(kp, EstimatorNoiseConfig(), "v")
    np.testing.assert_array_equal(out[..., :2], kp[..., :2])
    np.testing.assert_array_equal(out[..., 2], (kp[..., 2] > 0).astype(np.float32))


def test_jitter_grows_with_speed_and_scores_fall_with_the_error():
    kp = still_signer(4000)
    kp[:, LEFT, 0] += 5.0 * np.arange(4000)[:, None]  # the left hand moves 5 px/frame
    cfg = EstimatorNoiseConfig(jitter_px=1.0, face_jitter_px=1.5, hand_jitter_px=2.0, jitter_per_speed=0.5, score_px=3.0)
    out = apply_estimator_noise(kp, cfg, "video_1")
    d = out[..., :2] - kp[..., :2]
    assert np.std(d[:, 0, 0]) == pytest.approx(1.0, rel=0.05)  # body: base
    assert np.std(d[:, 40, 0]) == pytest.approx(1.5, rel=0.05)  # face: its base
    assert np.std(d[:, RIGHT.start, 1]) == pytest.approx(2.0, rel=0.05)  # still hand: hand base
    assert np.std(d[1:-1, LEFT.start, 1]) == pytest.approx(2.0 + 0.5 * 5, rel=0.05)  # moving hand: + 0.5 x 5
    e, present = np.linalg.norm(d, axis=-1), kp[..., 2] > 0
    np.testing.assert_allclose(out[..., 2][present], np.exp(-e[present] ** 2 / 18), atol=1e-3)  # float32 coordinates up to 2e4 px
    assert (out[..., 2][~present] == 0).all()


def test_bias_is_one_offset_per_video_and_region_and_the_same_for_the_same_name():
    kp = still_signer(10)
    cfg = EstimatorNoiseConfig(bias_px=3.0)
    out = apply_estimator_noise(kp, cfg, "a")
    d = out[..., :2] - kp[..., :2]
    for region in (slice(0, 11), slice(23, 91), LEFT, RIGHT):
        assert np.ptp(d[:, region], axis=(0, 1)).max() < 1e-5 and np.abs(d[0, region.start]).max() > 0
    assert not np.allclose(d[0, 0], d[0, LEFT.start])  # regions have their own offsets
    np.testing.assert_array_equal(out, apply_estimator_noise(kp, cfg, "a"))
    assert not np.array_equal(out, apply_estimator_noise(kp, cfg, "b"))


def test_hand_loss_chain_hand_computed():
    rng = np.random.default_rng(0)
    # certain loss after a found frame, certain recovery after a lost one: lost, found, lost, ...
    assert hand_lost(rng, np.ones(6), persistence=0.0).tolist() == [True, False] * 3
    assert not hand_lost(rng, np.zeros(6), persistence=0.99).any()
    lost = hand_lost(np.random.default_rng(1), np.full(200_000, 0.1), persistence=0.75)
    starts = np.flatnonzero(np.diff(lost.astype(int)) == 1)
    assert lost.mean() == pytest.approx(0.1 / (0.1 + 0.25), rel=0.05)  # the chain's stationary share
    assert len(starts) and (lost.sum() / len(starts)) == pytest.approx(1 / 0.25, rel=0.05)  # mean run 4 frames


def test_lost_hands_are_zero_and_overlap_with_the_face_loses_them():
    kp = still_signer(6)
    cfg = EstimatorNoiseConfig(hand_miss_overlap=1.0)
    out = apply_estimator_noise(kp, cfg, "v")
    assert (out[:, LEFT, 2] > 0).all()  # far from the face and the other hand: never lost
    kp[:, RIGHT, :2] = kp[:, LEFT, :2] + (35.0, -80.0)  # the right hand (10 px wide) in front of the face
    out = apply_estimator_noise(kp, cfg, "v")
    assert [bool((out[t, RIGHT] == 0).all()) for t in range(6)] == [True, False] * 3
    assert (out[:, LEFT, 2] > 0).all()


def test_error_statistics_hand_computed():
    exact = still_signer(4)
    est = exact.copy()
    est[:, :11, :2] += (3.0, 4.0)  # upper body 5 px off
    est[1:3, LEFT] = 0  # the left hand missed in frames 1 and 2: one run of 2
    stats = error_statistics([exact], [est])
    assert stats["body"]["found"] == 1.0 and stats["body"]["mean_px"] == pytest.approx(5.0)
    assert stats["body"]["mean_px_by_speed"][0] == pytest.approx(5.0)  # still points: the first speed bin
    assert stats["left_hand"]["found"] == 0.5 and stats["left_hand"]["mean_missed_run"] == 2.0
    assert stats["left_hand"]["missed_by_speed"][0] == 0.5 and stats["right_hand"]["mean_px"] == 0.0


def test_fitting_recovers_the_settings_that_made_the_errors():
    """Round trip: simulate an estimator with known settings on moving hands, measure it with
    error_statistics, fit: the fitted settings are the simulated ones (within sampling error)."""
    from pipelines.keypoints.estimator_noise import fit_noise_config

    truth = EstimatorNoiseConfig(jitter_px=2.0, face_jitter_px=1.0, hand_jitter_px=3.0, jitter_per_speed=0.4, hand_miss=0.1,
                                 hand_miss_per_speed=0.05, hand_miss_persistence=0.7)
    rng = np.random.default_rng(0)
    exact = []
    for v in range(30):
        kp = still_signer(300)
        # hands wander with speeds from still to ~6 px/frame, far from each other and the face
        for hand in (LEFT, RIGHT):
            speed = np.repeat(rng.uniform(0, 6, 30), 10)
            kp[:, hand, 1] += np.cumsum(speed)[:, None]
        exact.append(kp)
    noisy = [apply_estimator_noise(k, truth, f"video{v}") for v, k in enumerate(exact)]
    fitted = fit_noise_config(error_statistics(exact, noisy))
    assert fitted.face_jitter_px == pytest.approx(1.0, rel=0.15)
    assert fitted.jitter_px == pytest.approx(2.0, rel=0.1) and fitted.hand_jitter_px == pytest.approx(3.0, rel=0.15)
    assert fitted.jitter_per_speed == pytest.approx(0.4, rel=0.25)
    assert fitted.hand_miss_persistence == pytest.approx(0.7, abs=0.05)
    assert fitted.hand_miss == pytest.approx(0.1, abs=0.03) and fitted.hand_miss_per_speed == pytest.approx(0.05, abs=0.02)
    assert fitted.hand_miss_overlap == 0.0 and fitted.bias_px < 0.3


def test_groundtruth_backend_applies_the_configured_noise_before_moving_points(tmp_path):
    """The demo's estimated-keypoint config validates, and the `groundtruth` back-end with its noise
    gives the same degraded keypoints for a video whatever the batch, moved like the frames."""
    from pathlib import Path

    from common.config import load_config
    from jobs.preprocess import PreprocessConfig
    from pipelines.keypoints.base import GroundTruthConfig, VideoFrames
    from pipelines.keypoints.groundtruth import GroundTruthKeypoints
    from pipelines.video_io import Geometry

    repo = Path(__file__).resolve().parents[1]
    noise = load_config(PreprocessConfig, repo / "configs/data/synthetic_demo.yaml").keypoints.groundtruth.noise
    assert noise is not None and noise.hand_miss_persistence > 0
    exact = still_signer(40)
    np.save(tmp_path / "v1.npy", exact)
    backend = GroundTruthKeypoints(GroundTruthConfig(noise=noise))
    half = Geometry(sx=0.5, sy=0.5)
    video = VideoFrames("v1", np.zeros((20, 64, 64, 3), np.uint8), np.arange(0, 40, 2), half, str(tmp_path / "v1.npy"))
    got = backend.estimate([video])[0]
    want = apply_estimator_noise(exact, noise, "v1")[::2]
    present = want[..., 2] > 0
    np.testing.assert_allclose(got[..., :2][present], half.apply(want[..., :2])[present], atol=1e-4)
    np.testing.assert_array_equal(got[..., 2], want[..., 2])
    assert (got[~present] == 0).all() and not present.all()  # some hand frames lost
    clean, exists = GroundTruthKeypoints(GroundTruthConfig()).estimate([video])[0], exact[::2, :, 2] > 0
    np.testing.assert_allclose(clean[..., :2][exists], half.apply(exact[::2, :, :2])[exists], atol=1e-4)
    assert (clean[~exists] == 0).all()
