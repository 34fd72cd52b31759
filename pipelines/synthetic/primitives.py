"""Sign primitives: the phonology of the synthetic sign languages.

A sign is a short motion of the dominant hand (a path from a location relative to the body), a
hand shape (possibly changing), a hand orientation (possibly turning), an optional role for the
non-dominant hand and an optional head movement. Positions are in the signer's body units (see
`signer.py`), for the dominant (right) hand, which the image shows on the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthetic.signer import HANDSHAPES, L_SHOULDER, R_SHOULDER, FOREARM, UPPER_ARM, hand_points

# Wrist positions relative to the neck (body units).
LOCATIONS: dict[str, tuple[float, float]] = {
    "forehead": (-0.06, -0.24),
    "temple": (-0.16, -0.21),
    "cheek": (-0.14, -0.11),
    "chin": (-0.05, -0.04),
    "chest": (-0.05, 0.14),
    "contra": (0.11, 0.09),  # in front of the other shoulder
    "neutral": (-0.13, 0.22),
    "low": (-0.06, 0.35),
    "side": (-0.30, 0.17),
    "high": (-0.27, -0.17),
}
# Direction of the hand (wrist → fingertips), degrees in image coordinates (y down).
ORIENTATIONS: dict[str, float] = {"up": -90, "up_in": -45, "in": 0, "down": 90, "out": 180, "up_out": -135}
MOVEMENTS: dict[str, tuple[float, float]] = {
    "up": (0, -1), "down": (0, 1), "in": (1, 0), "out": (-1, 0),
    "up_in": (0.7071, -0.7071), "up_out": (-0.7071, -0.7071), "down_in": (0.7071, 0.7071), "down_out": (-0.7071, 0.7071),
}  # fmt: skip
PATHS = ("straight", "arc", "circle", "repeat", "zigzag")
PERIODIC_PATHS = ("circle", "repeat", "zigzag")
HAND_MODES = ("one", "mirror", "alternate", "base")  # non-dominant: rests / mirrors / mirrors in antiphase / static base
HEAD_CUES = ("nod", "shake", "tilt")
BASE_WRIST = (0.09, 0.22)  # non-dominant base hand, pointing across the body
BASE_LOCATIONS = ("chest", "neutral", "low")
BASE_FRAMES = {"straight": 8, "arc": 9, "circle": 11, "repeat": 10, "zigzag": 10}  # at speed 1, 25 fps
AMPLITUDE = {"straight": 0.16, "arc": 0.16, "zigzag": 0.16, "repeat": 0.08, "circle": 0.06}
# Where any hand keypoint may go (body units): inside the frame for every signer scale (up to
# 0.85 * 1.071 frame heights per unit) and offset (up to 0.05 / 0.03 of the frame).
SAFE_X, SAFE_Y = (-0.47, 0.47), (-0.44, 0.5)


@dataclass(frozen=True)
class SignPrimitive:
    """One sign's motion. `frames` is its duration at speed 1 (25 fps)."""

    handshape: str
    end_handshape: str  # equals `handshape` unless the shape changes during the sign
    orientation: str
    rotation: int  # wrist turn over the sign, degrees
    location: str
    movement: str  # direction of the path (circle: start angle, sense from the direction)
    path: str
    hands: str
    base_handshape: str | None  # the static non-dominant hand's shape (hands == "base")
    head: str | None  # lexical head movement
    frames: int

    def features(self) -> tuple:
        return (self.handshape, self.end_handshape, self.orientation, self.rotation, self.location, self.movement, self.path, self.hands, self.base_handshape, self.head)


def ease(u: np.ndarray) -> np.ndarray:
    """Smoothstep: 0 → 1 with zero velocity at both ends."""
    return u * u * (3 - 2 * u)


def wrist_path(prim: SignPrimitive, u: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """Dominant wrist positions at normalised times u ∈ [0, 1]: (n,) → (n, 2) body units.

    `phase` shifts the periodic part (the other hand in "alternate" signs uses π).
    """
    start = np.array(LOCATIONS[prim.location])
    m = np.array(MOVEMENTS[prim.movement])
    side = np.array([-m[1], m[0]])
    amp, e = AMPLITUDE[prim.path], ease(u)[:, None]
    if prim.path == "straight":
        return start + amp * e * m
    if prim.path == "arc":
        return start + amp * e * m + 0.35 * amp * np.sin(np.pi * e) * side
    if prim.path == "circle":
        sense = 1.0 if list(MOVEMENTS).index(prim.movement) % 2 == 0 else -1.0
        angle = np.arctan2(m[1], m[0]) + sense * 2 * np.pi * ease(u) + phase
        return start + amp * np.stack([np.cos(angle), np.sin(angle)], -1)
    if prim.path == "repeat":  # two taps along the movement direction
        return start + amp * (0.5 - 0.5 * np.cos(4 * np.pi * u + phase))[:, None] * m
    if prim.path == "zigzag":
        return start + amp * e * m + 0.035 * np.sin(4 * np.pi * u + phase)[:, None] * side
    raise ValueError(f"unknown path {prim.path!r}")


def hand_direction(prim: SignPrimitive, u: np.ndarray) -> np.ndarray:
    """Dominant hand direction (radians) at times u: (n,) → (n,)."""
    return np.radians(ORIENTATIONS[prim.orientation] + prim.rotation * ease(u))


def hand_shape(prim: SignPrimitive, u: np.ndarray) -> np.ndarray:
    """Finger configuration at times u, changing in the middle half of the sign: (n,) → (n, 7)."""
    w = ease(np.clip((u - 0.25) / 0.5, 0, 1))[:, None]
    return (1 - w) * np.array(HANDSHAPES[prim.handshape]) + w * np.array(HANDSHAPES[prim.end_handshape])


def mirror(xy: np.ndarray) -> np.ndarray:
    """Reflect body-unit positions about the body's midline."""
    return xy * np.array([-1.0, 1.0])


def _fits(prim: SignPrimitive) -> bool:
    """The sign is reachable, keeps the hands inside the safe box and clear of the body midline."""
    u = np.linspace(0, 1, 17)
    wrist = wrist_path(prim, u)
    reach = np.linalg.norm(wrist - R_SHOULDER, axis=1)
    if reach.max() > UPPER_ARM + FOREARM - 0.02 or reach.min() < 0.1:
        return False
    pts = hand_points(wrist, hand_direction(prim, u), hand_shape(prim, u), right=True)
    if prim.hands in ("mirror", "alternate"):
        if wrist[:, 0].max() > -0.06:  # mirrored hands would collide
            return False
        other = mirror(wrist_path(prim, u, np.pi if prim.hands == "alternate" else 0.0))
        if np.linalg.norm(other - L_SHOULDER, axis=1).max() > UPPER_ARM + FOREARM - 0.02:
            return False
    x, y = pts[..., 0], pts[..., 1]
    return bool(x.min() > SAFE_X[0] and x.max() < SAFE_X[1] and y.min() > SAFE_Y[0] and y.max() < SAFE_Y[1])


def distinct(a: SignPrimitive, b: SignPrimitive) -> bool:
    """Visually distinct at low resolution: a different trajectory and ≥ 3 differing features."""
    if (a.location, a.movement, a.path) == (b.location, b.movement, b.path):
        return False
    return sum(x != y for x, y in zip(a.features(), b.features())) >= 3


def sample_primitive(rng: np.random.Generator, head: str | None = None) -> SignPrimitive:
    """A random primitive that fits the frame (hands inside, reachable, not colliding)."""
    shapes, paths = list(HANDSHAPES), list(PATHS)
    while True:
        path = paths[rng.integers(len(paths))]
        modes = HAND_MODES if path in PERIODIC_PATHS else ("one", "mirror", "base")
        hands = str(rng.choice(modes, p=_mode_weights(modes)))
        locations = BASE_LOCATIONS if hands == "base" else tuple(LOCATIONS)
        shape = shapes[rng.integers(len(shapes))]
        prim = SignPrimitive(
            handshape=shape,
            end_handshape=shapes[rng.integers(len(shapes))] if rng.random() < 0.2 else shape,
            orientation=list(ORIENTATIONS)[rng.integers(len(ORIENTATIONS))],
            rotation=int(rng.choice([0, 0, 60, -60])),
            location=locations[rng.integers(len(locations))],
            movement=list(MOVEMENTS)[rng.integers(len(MOVEMENTS))],
            path=path,
            hands=hands,
            base_handshape=str(rng.choice(["flat", "fist"])) if hands == "base" else None,
            head=head,
            frames=BASE_FRAMES[path] + int(rng.integers(-1, 2)),
        )
        if _fits(prim):
            return prim


def _mode_weights(modes: tuple[str, ...]) -> np.ndarray:
    weights = np.array([{"one": 0.55, "mirror": 0.2, "alternate": 0.1, "base": 0.15}[m] for m in modes])
    return weights / weights.sum()


def sample_inventory(rng: np.random.Generator, heads: list[str | None], taken: list[SignPrimitive]) -> list[SignPrimitive]:
    """One new primitive per entry of `heads`, each distinct from `taken` and from each other."""
    chosen: list[SignPrimitive] = []
    for head in heads:
        for _ in range(10_000):
            prim = sample_primitive(rng, head)
            if all(distinct(prim, other) for other in taken + chosen):
                chosen.append(prim)
                break
        else:
            raise RuntimeError(f"could not find {len(heads)} distinct sign primitives (have {len(taken) + len(chosen)})")
    return chosen
