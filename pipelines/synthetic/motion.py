"""Co-articulation: a sentence of sign primitives → a pose per frame, with each sign's frame span.

A sentence starts and ends in the rest pose; between signs the pose is interpolated (eased) from
the end of one sign to the start of the next, over 2-5 frames depending on the distance and the
signer's speed. Face cues are part of the pose, so they blend in and out over the transitions.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipelines.synthetic import signer as body
from pipelines.synthetic.primitives import BASE_WRIST, HEAD_CUES, SignPrimitive, ease, hand_direction, hand_shape, mirror, wrist_path

INTENSE = "intense"  # the non-manual intensity cue: raised eyebrows, wide eyes, open mouth
CUES = (INTENSE,)
_ANGLES = (body.DOM_DIR, body.ND_DIR)


@dataclass(frozen=True)
class MotionParams:
    """Timing of a sentence, in frames at 25 fps (durations divide by the signer's speed).

    transition_frames: min/max frames between two signs (and from/to rest);
    rest_frames: min/max frames held in the rest pose at the start and at the end;
    duration_jitter: relative random change of each sign's duration.
    """

    transition_frames: tuple[int, int] = (2, 5)
    rest_frames: tuple[int, int] = (1, 2)
    duration_jitter: float = 0.1


SPACE_CENTRE = np.array([0.0, 0.25])  # body units: mid-chest, the centre of the signing space


@dataclass(frozen=True)
class Articulation:
    """A signer's own way of signing (idiolect), body units. Each sign's wrist positions are scaled
    about the chest (`scale`: a larger or smaller signing space) and shifted (`shift`); finger
    configurations move towards the relaxed hand by `laxness` (0 crisp .. 1 relaxed); and every
    sign gets a fixed wrist offset of this signer (std `variant_std`, drawn per sign from `seed`:
    the same signer signs it the same way every time, another signer differently). Rest poses
    are untouched. The identity (defaults) changes nothing."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    laxness: float = 0.0
    variant_std: float = 0.0
    seed: int = 0

    def variant(self, prim: SignPrimitive) -> np.ndarray:
        """This signer's wrist offset for `prim` (2,), body units."""
        if self.variant_std == 0:
            return np.zeros(2)
        key = zlib.crc32(repr(prim.features()).encode())
        return np.random.default_rng([self.seed, key]).normal(0.0, self.variant_std, 2)

    def apply(self, poses: np.ndarray, prim: SignPrimitive) -> np.ndarray:
        """One sign's poses (T, POSE_DIM) as this signer articulates them (a new array)."""
        out = poses.copy()
        offset = np.asarray(self.shift) + self.variant(prim)
        out[:, body.DOM_XY] = SPACE_CENTRE + self.scale * (out[:, body.DOM_XY] - SPACE_CENTRE) + offset
        if prim.hands in ("mirror", "alternate", "base"):  # one-handed signs leave the other hand at rest
            mirrored = offset * (-1.0, 1.0) if prim.hands != "base" else offset
            out[:, body.ND_XY] = SPACE_CENTRE + self.scale * (out[:, body.ND_XY] - SPACE_CENTRE) + mirrored
        relaxed = np.asarray(body.RELAXED)
        for shape in (body.DOM_SHAPE, body.ND_SHAPE):
            out[:, shape] = (1 - self.laxness) * out[:, shape] + self.laxness * relaxed
        return out


def sign_poses(prim: SignPrimitive, num_frames: int, cue: str | None = None) -> np.ndarray:
    """The poses of one sign performed over `num_frames` frames: (num_frames, POSE_DIM)."""
    u = np.linspace(0.0, 1.0, num_frames)
    poses = np.tile(body.rest_pose(), (num_frames, 1))
    poses[:, body.DOM_XY] = wrist_path(prim, u)
    poses[:, body.DOM_DIR] = hand_direction(prim, u)
    poses[:, body.DOM_SHAPE] = hand_shape(prim, u)
    if prim.hands in ("mirror", "alternate"):
        poses[:, body.ND_XY] = mirror(wrist_path(prim, u, np.pi if prim.hands == "alternate" else 0.0))
        poses[:, body.ND_DIR] = np.pi - poses[:, body.DOM_DIR]
        poses[:, body.ND_SHAPE] = poses[:, body.DOM_SHAPE]
    elif prim.hands == "base":
        poses[:, body.ND_XY] = BASE_WRIST
        poses[:, body.ND_DIR] = np.pi  # pointing across the body
        poses[:, body.ND_SHAPE] = body.HANDSHAPES[prim.base_handshape or "flat"]
    wave = np.sin(4 * np.pi * u)  # two cycles
    if prim.head == "nod":
        poses[:, body.HEAD.start + 1] = 0.015 * wave
    elif prim.head == "shake":
        poses[:, body.HEAD.start] = 0.01 * wave
        poses[:, body.YAW] = wave
    elif prim.head == "tilt":
        poses[:, body.HEAD.start + 2] = 0.2 * np.sin(np.pi * u)
    elif prim.head is not None:
        raise ValueError(f"unknown head movement {prim.head!r} (known: {HEAD_CUES})")
    if cue == INTENSE:
        poses[:, body.BROWS] = 1.0
        poses[:, body.MOUTH] = 1.0
    elif cue is not None:
        raise ValueError(f"unknown cue {cue!r} (known: {CUES})")
    return poses


def transition(a: np.ndarray, b: np.ndarray, num_frames: int) -> np.ndarray:
    """Poses strictly between a and b, eased; hand directions turn the short way. (num_frames, D)."""
    w = ease(np.arange(1, num_frames + 1) / (num_frames + 1))[:, None]
    delta = b - a
    for i in _ANGLES:
        delta[i] = (delta[i] + np.pi) % (2 * np.pi) - np.pi
    return a + w * delta


def _transition_length(a: np.ndarray, b: np.ndarray, speed: float, params: MotionParams) -> int:
    lo, hi = params.transition_frames
    dist = max(np.linalg.norm(b[body.DOM_XY] - a[body.DOM_XY]), np.linalg.norm(b[body.ND_XY] - a[body.ND_XY]))
    return int(np.clip(round((lo + (hi - lo) * min(1.0, dist / 0.5)) / speed), lo, hi))


def sentence_poses(
    signs: Sequence[tuple[SignPrimitive, str | None]],
    speed: float,
    jitter: float,
    rng: np.random.Generator,
    params: MotionParams = MotionParams(),
    articulation: Articulation = Articulation(),
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Poses of a signed sentence and each sign's [start, end) frame span.

    signs: (primitive, cue) per sign; speed: signer speed factor; jitter: std (body units) of a
    slow wobble of hands and head; articulation: the signer's idiolect. Returns (T, POSE_DIM)
    float64 and len(signs) spans.
    """
    rest = body.rest_pose()
    lo, hi = params.rest_frames
    chunks = [np.tile(rest, (int(rng.integers(lo, hi + 1)), 1))]
    length = len(chunks[0])
    spans = []
    previous = rest
    for prim, cue in signs:
        n = max(4, round(prim.frames / speed * rng.uniform(1 - params.duration_jitter, 1 + params.duration_jitter)))
        poses = sign_poses(prim, n, cue)
        if articulation != Articulation():
            poses = articulation.apply(poses, prim)
        between = transition(previous, poses[0], _transition_length(previous, poses[0], speed, params))
        chunks += [between, poses]
        length += len(between)
        spans.append((length, length + n))
        length += n
        previous = poses[-1]
    chunks.append(transition(previous, rest, _transition_length(previous, rest, speed, params)))
    chunks.append(np.tile(rest, (int(rng.integers(lo, hi + 1)), 1)))
    poses = np.concatenate(chunks)
    if jitter > 0:
        poses = _wobble(poses, jitter, rng)
    return poses, spans


def _wobble(poses: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add smooth noise (about 5-frame correlation) to wrists and head position."""
    kernel = np.hanning(7)[1:-1]
    kernel /= np.sqrt((kernel**2).sum())  # unit variance after filtering white noise
    dims = [*range(body.DOM_XY.start, body.DOM_XY.stop), *range(body.ND_XY.start, body.ND_XY.stop), body.HEAD.start, body.HEAD.start + 1]
    noise = rng.standard_normal((len(poses) + len(kernel) - 1, len(dims)))
    smooth = np.stack([np.convolve(noise[:, k], kernel, mode="valid") for k in range(len(dims))], 1)
    out = poses.copy()
    out[:, dims] += std * smooth
    return out
