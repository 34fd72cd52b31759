"""Keypoints as an estimator delivers them, from exact ones: the synthetic corpus' `groundtruth`
back-end can degrade its rendered keypoints the way a real pose estimator errs.

Per video (seeded by `seed` and the video's name, so a resumed preprocessing run writes the same
rows), in the source video's pixels:
- a constant offset per body region (body, face, each hand): N(0, bias_px) per coordinate;
- per-point jitter N(0, jitter_px + jitter_per_speed * speed) per coordinate, where speed is the
  point's exact motion in px/frame (face and hand points use face_jitter_px and hand_jitter_px as
  the base);
- each hand is lost for whole frames: a two-state chain per hand whose chance of losing a found
  hand is hand_miss + hand_miss_per_speed * wrist speed (blur) + hand_miss_overlap when the hand
  is within one hand span of the other hand or the face centre (occlusion), and whose chance of
  staying lost is hand_miss_persistence (drop-outs last a few frames). A lost hand has its points
  and scores at 0, as MediaPipe reports it;
- the score of every point found is exp(-e² / (2 score_px²)) for its displacement e (px): poor
  points get low scores, as heatmap and landmark confidences do.
Points whose exact score is 0 stay 0. `apply_estimator_noise` returns a new array.
"""

from __future__ import annotations

import zlib

import numpy as np
from pydantic import Field

from common.config import StrictModel

BODY, FACE = slice(0, 23), slice(23, 91)
HANDS = (slice(91, 112), slice(112, 133))  # left, right (the signer's)
FACE_CENTRE = 53  # nose tip of the 68-point face (iBUG 31, 0-based 30 -> 23 + 30)


class EstimatorNoiseConfig(StrictModel):
    """Error model of a pose estimator (see the module docstring); pixels of the source video."""

    seed: int = 0
    jitter_px: float = Field(0.0, ge=0)  # base std per coordinate, body points
    face_jitter_px: float = Field(0.0, ge=0)  # base std per coordinate, face points
    hand_jitter_px: float = Field(0.0, ge=0)  # base std per coordinate, hand points
    jitter_per_speed: float = Field(0.0, ge=0)  # extra std per px/frame of the point's motion
    bias_px: float = Field(0.0, ge=0)  # std of the per-video offset of each region
    hand_miss: float = Field(0.0, ge=0, le=1)  # chance per frame to lose a found, still hand
    hand_miss_per_speed: float = Field(0.0, ge=0)  # added per px/frame of wrist motion
    hand_miss_overlap: float = Field(0.0, ge=0, le=1)  # added when the hand overlaps the other hand or the face
    hand_miss_persistence: float = Field(0.0, ge=0, lt=1)  # chance a lost hand stays lost the next frame
    score_px: float = Field(4.0, gt=0)  # displacement (px) at which the score falls to exp(-1/2)


def point_speed(keypoints: np.ndarray) -> np.ndarray:
    """(T, K) motion of each point in px/frame: the mean of its distance to the previous and the
    next frame (one-sided at the ends, 0 for a single frame or a point absent in a neighbour)."""
    xy, present = keypoints[..., :2], keypoints[..., 2] > 0
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)  # (T-1, K)
    step[~(present[1:] & present[:-1])] = 0.0
    if len(keypoints) < 2:
        return np.zeros(keypoints.shape[:2], np.float32)
    before = np.concatenate([step[:1], step])
    after = np.concatenate([step, step[-1:]])
    return ((before + after) / 2).astype(np.float32)


def hand_span(keypoints: np.ndarray, hand: slice) -> np.ndarray:
    """(T,) size of a hand in px: the largest side of its points' bounding box (0 when absent)."""
    pts, present = keypoints[:, hand, :2], keypoints[:, hand, 2] > 0
    lo = np.where(present[..., None], pts, np.inf).min(axis=1)
    hi = np.where(present[..., None], pts, -np.inf).max(axis=1)
    span = (hi - lo).max(axis=-1)
    return np.where(np.isfinite(span), span, 0.0)


def hand_overlaps(keypoints: np.ndarray, hand: slice, other: slice) -> np.ndarray:
    """(T,) whether a hand's centre lies within one hand span of the other hand's centre or the face centre."""
    def centre(part: slice) -> tuple[np.ndarray, np.ndarray]:
        present = keypoints[:, part, 2] > 0
        count = present.sum(axis=1)
        mean = (keypoints[:, part, :2] * present[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
        return mean, count > 0

    c, ok = centre(hand)
    c_other, ok_other = centre(other)
    face, ok_face = keypoints[:, FACE_CENTRE, :2], keypoints[:, FACE_CENTRE, 2] > 0
    span = hand_span(keypoints, hand)
    near_hand = ok & ok_other & (np.linalg.norm(c - c_other, axis=-1) < span)
    near_face = ok & ok_face & (np.linalg.norm(c - face, axis=-1) < span)
    return near_hand | near_face


def hand_lost(rng: np.random.Generator, miss_prob: np.ndarray, persistence: float) -> np.ndarray:
    """(T,) bool: a two-state chain, lost at frame t with miss_prob[t] after a found frame and with
    `persistence` after a lost one (the first frame follows a found one)."""
    lost = np.zeros(len(miss_prob), bool)
    draws = rng.random(len(miss_prob))
    previous = False
    for t, p in enumerate(miss_prob):
        previous = bool(draws[t] < (persistence if previous else p))
        lost[t] = previous
    return lost


def video_rng(seed: int, name: str) -> np.random.Generator:
    """The noise generator of one video: the same for a name whatever the batch or process."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def apply_estimator_noise(keypoints: np.ndarray, config: EstimatorNoiseConfig, name: str) -> np.ndarray:
    """Exact keypoints (T, 133, 3: x, y, score) -> keypoints with the estimator errors of `config`."""
    rng = video_rng(config.seed, name)
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    present = kp[..., 2] > 0
    speed = point_speed(kp)
    base = np.full(kp.shape[1], config.jitter_px, np.float32)
    base[FACE] = config.face_jitter_px
    for hand in HANDS:
        base[hand] = config.hand_jitter_px
    std = base[None, :] + config.jitter_per_speed * speed
    offset = rng.normal(0.0, 1.0, kp.shape[:2] + (2,)).astype(np.float32) * std[..., None]
    for region in (BODY, FACE, *HANDS):
        offset[:, region] += rng.normal(0.0, config.bias_px, 2).astype(np.float32)
    kp[..., :2] += offset
    error = np.linalg.norm(offset, axis=-1)
    kp[..., 2] = np.exp(-(error**2) / (2 * config.score_px**2)) * present
    for hand, other in (HANDS, HANDS[::-1]):
        wrist_speed = speed[:, hand.start]
        miss = config.hand_miss + config.hand_miss_per_speed * wrist_speed + config.hand_miss_overlap * hand_overlaps(keypoints, hand, other)
        lost = hand_lost(rng, np.clip(miss, 0.0, 1.0), config.hand_miss_persistence)
        kp[lost, hand] = 0.0
    kp[~present] = 0.0
    return kp


REGIONS = {"body": slice(0, 11), "face": FACE, "left_hand": HANDS[0], "right_hand": HANDS[1]}  # upper body: 0-10
SPEED_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)  # px/frame


def error_statistics(exact: list[np.ndarray], estimated: list[np.ndarray]) -> dict:
    """How estimated keypoints err against exact ones, over videos (each (T, 133, 3), same T), in
    the exact keypoints' pixels. Per region (upper body, face, each hand): the share of frames in
    which the region is found (any point with score > 0) where it exists, the mean and median
    point error (px) of found points, the mean error per speed bin of the exact point's motion
    (`SPEED_BINS`, px/frame), the std over videos of each video's mean offset (bias); per hand
    also the share missed per wrist-speed bin and the mean length (frames) of a run of missed
    frames. These are the numbers the `EstimatorNoiseConfig` defaults are set from."""
    out: dict = {}
    for region, part in REGIONS.items():
        errors, speeds, biases, found, frames = [], [], [], 0, 0
        wrist_speed, missed, overlapped, runs = [], [], [], []
        for ex, est in zip(exact, estimated):
            speed = point_speed(ex)
            exists = (ex[:, part, 2] > 0).any(axis=1)
            hit = (est[:, part, 2] > 0).any(axis=1) & exists
            frames += int(exists.sum())
            found += int(hit.sum())
            ok = (ex[:, part, 2] > 0) & (est[:, part, 2] > 0)
            diff = est[:, part, :2] - ex[:, part, :2]
            errors.append(np.linalg.norm(diff, axis=-1)[ok])
            speeds.append(speed[:, part][ok])
            if ok.any():
                biases.append(diff[ok].mean(axis=0))
            if part in HANDS:
                wrist_speed.append(speed[:, part.start][exists])
                lost = exists & ~hit
                missed.append(lost[exists])
                other = HANDS[1] if part == HANDS[0] else HANDS[0]
                overlapped.append(hand_overlaps(ex, part, other)[exists])
                runs += [len(r) for r in np.split(lost, np.flatnonzero(np.diff(lost.astype(int))) + 1) if r.any()]
        err, spd = np.concatenate(errors), np.concatenate(speeds)
        bins = [(spd >= lo) & (spd < hi) for lo, hi in zip(SPEED_BINS[:-1], SPEED_BINS[1:])]
        by_speed = [float(err[b].mean()) if b.any() else None for b in bins]
        stats = {"found": found / max(1, frames), "mean_px": float(err.mean()) if len(err) else None,
                 "median_px": float(np.median(err)) if len(err) else None, "mean_px_by_speed": by_speed,
                 "mean_speed_by_bin": [float(spd[b].mean()) if b.any() else None for b in bins],
                 "bias_std_px": float(np.std(np.stack(biases), axis=0).mean()) if len(biases) > 1 else None}
        if part in HANDS:
            ws, ms, ov = np.concatenate(wrist_speed), np.concatenate(missed), np.concatenate(overlapped)
            hand_bins = [(ws >= lo) & (ws < hi) & ~ov for lo, hi in zip(SPEED_BINS[:-1], SPEED_BINS[1:])]
            stats["missed_by_speed"] = [float(ms[b].mean()) if b.any() else None for b in hand_bins]  # apart from hand and face
            stats["wrist_speed_by_bin"] = [float(ws[b].mean()) if b.any() else None for b in hand_bins]
            still = ws < SPEED_BINS[1]
            stats["missed_still_apart"] = float(ms[still & ~ov].mean()) if (still & ~ov).any() else None
            stats["missed_still_overlapping"] = float(ms[still & ov].mean()) if (still & ov).any() else None
            stats["mean_missed_run"] = float(np.mean(runs)) if runs else 0.0
        out[region] = stats
    return out


RAYLEIGH_MEAN = float(np.sqrt(np.pi / 2))  # mean 2-D error of N(0, s) per coordinate, in units of s


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of (x, y) points; (y, 0) for a single x."""
    x, y = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    if len(points) < 2 or np.ptp(x) == 0:
        return (float(y.mean()) if len(points) else 0.0), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def fit_noise_config(stats: dict, *, seed: int = 0, score_px: float = 4.0) -> EstimatorNoiseConfig:
    """An `EstimatorNoiseConfig` whose terms reproduce an estimator's `error_statistics`: per-point
    std from lines through the per-speed-bin mean errors (a 2-D Gaussian's mean error is 1.25 x
    its std; intercepts: jitter_px for the body, hand_jitter_px for the hands; the mean slope:
    jitter_per_speed), bias from the per-video offsets, and the hand chain from the missed shares:
    persistence q = 1 - 1 / mean missed run; a found hand's loss chance p from a missed share s
    (the chain's stationary share s = p / (p + 1 - q)) -> p = s (1 - q) / (1 - s), on a line over
    wrist speed (intercept hand_miss, slope hand_miss_per_speed); hand_miss_overlap from the still
    hands that overlap the other hand or the face. The jitter line has one slope and an intercept
    each for the body and the hands."""
    hands = [stats["left_hand"], stats["right_hand"]]
    # one slope, an intercept each for the body, the face and the hands: std = base + slope x speed
    rows, ys = [], []
    for region, group in ((stats["body"], 0), (stats["face"], 1), (hands[0], 2), (hands[1], 2)):
        for v, e in zip(region["mean_speed_by_bin"], region["mean_px_by_speed"]):
            if v is not None and e is not None:
                rows.append([float(group == g) for g in range(3)] + [v])
                ys.append(e / RAYLEIGH_MEAN)
    jitter, face_jitter, hand_jitter, per_speed = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0]
    biases = [stats[r]["bias_std_px"] for r in REGIONS if stats[r]["bias_std_px"] is not None]
    runs = [h["mean_missed_run"] for h in hands if h["mean_missed_run"]]
    q = float(np.clip(1 - 1 / np.mean(runs), 0.0, 0.95)) if runs else 0.0

    def chance(share: float) -> float:
        return float(min(1.0, share * (1 - q) / max(1e-6, 1 - share)))

    miss, miss_per_speed = _line([(v, chance(share)) for h in hands for v, share in zip(h["wrist_speed_by_bin"], h["missed_by_speed"])
                                  if v is not None and share is not None])
    overlap = [chance(h["missed_still_overlapping"]) - chance(h["missed_still_apart"]) for h in hands
               if h["missed_still_overlapping"] is not None and h["missed_still_apart"] is not None]
    return EstimatorNoiseConfig(
        seed=seed, jitter_px=round(max(0.0, float(jitter)), 2), hand_jitter_px=round(max(0.0, float(hand_jitter)), 2),
        face_jitter_px=round(max(0.0, float(face_jitter)), 2),
        jitter_per_speed=round(max(0.0, float(per_speed)), 3),
        bias_px=round(float(np.mean(biases)) if biases else 0.0, 2), hand_miss=round(float(np.clip(miss, 0, 1)), 3),
        hand_miss_per_speed=round(max(0.0, miss_per_speed), 3),
        hand_miss_overlap=round(float(np.clip(np.mean(overlap), 0, 1)) if overlap else 0.0, 3),
        hand_miss_persistence=round(q, 3), score_px=score_px)
