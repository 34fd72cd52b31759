"""The articulated 2D signer: pose vector → COCO-WholeBody keypoints → an RGB frame.

Geometry is in *body units* relative to the signer's neck (x to the image right, y down); one
body unit is `0.85 * min(width, height) * style.scale` pixels, so the whole upper body fits the
frame. The signer faces the camera and is right-handed: the dominant (right) hand appears on the
image left. Frames are drawn from the keypoints alone, so the keypoints are exact ground truth.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import cv2
import numpy as np

# --- pose vector layout (one frame) -----------------------------------------------------------
DOM_XY = slice(0, 2)  # dominant (right) wrist, body units
DOM_DIR = 2  # hand direction (wrist → middle finger), radians in image coordinates
DOM_SHAPE = slice(3, 10)  # finger configuration, see HANDSHAPES
ND_XY = slice(10, 12)  # non-dominant (left) wrist
ND_DIR = 12
ND_SHAPE = slice(13, 20)
HEAD = slice(20, 23)  # head shift dx, dy (body units) and roll (radians)
YAW = 23  # -1..1: facial features shift sideways (head turn / shake)
BROWS = 24  # 0..1: eyebrows raised, eyes wide
MOUTH = 25  # 0..1: mouth open
POSE_DIM = 26

# Finger configuration: curl of thumb, index, middle, ring, pinky (0 straight .. 1 curled),
# finger spread (0 together .. 1 wide), thumb abduction (0 along the palm .. 1 out at ~90°).
HANDSHAPES: dict[str, tuple[float, ...]] = {
    "fist": (0.8, 1, 1, 1, 1, 0.0, 0.2),
    "flat": (0.0, 0, 0, 0, 0, 0.0, 0.1),
    "open": (0.0, 0, 0, 0, 0, 1.0, 1.0),
    "point": (0.8, 0, 1, 1, 1, 0.0, 0.2),
    "v": (0.8, 0, 0, 1, 1, 1.0, 0.2),
    "thumb_up": (0.0, 1, 1, 1, 1, 0.0, 1.0),
    "y": (0.0, 1, 1, 1, 0, 1.0, 1.0),
    "l": (0.0, 0, 1, 1, 1, 0.0, 1.0),
    "claw": (0.3, 0.55, 0.55, 0.55, 0.55, 1.0, 0.8),
    "w": (0.8, 0, 0, 0, 1, 1.0, 0.2),
    "horns": (0.8, 0, 1, 1, 0, 0.6, 0.2),
}
RELAXED = (0.3, 0.35, 0.35, 0.4, 0.45, 0.2, 0.3)

# --- skeleton (body units) --------------------------------------------------------------------
R_SHOULDER = np.array([-0.19, 0.02])
L_SHOULDER = np.array([0.19, 0.02])
UPPER_ARM, FOREARM = 0.24, 0.22
HEAD_CENTER = np.array([0.0, -0.215])  # eye level, middle of the face
FACE_HALF_WIDTH, FACE_CHIN = 0.095, 0.125
PALM_LENGTH, PALM_WIDTH = 0.105, 0.1  # hands are drawn ~1.25x life size, to read at 48 px
# (along the hand, towards the thumb side) of index/middle/ring/pinky knuckles, in palm units
KNUCKLES = np.array([[1.0, 0.36], [1.03, 0.12], [1.0, -0.12], [0.93, -0.36]])
PHALANGES = 1.25 * np.array([[0.038, 0.024, 0.019], [0.042, 0.027, 0.020], [0.039, 0.025, 0.019], [0.030, 0.019, 0.016]])
THUMB_BASE = np.array([0.22, 0.42])
THUMB_PHALANGES = 1.25 * np.array([0.035, 0.028, 0.022])
SPREAD_DEG = np.array([[3.0, 1.0, -1.0, -3.0], [14.0, 4.0, -6.0, -16.0]])  # spread 0, spread 1
CURL_DEG = np.array([75.0, 95.0, 70.0])  # bend of each finger joint at curl 1

NUM_KEYPOINTS = 133
BODY, FACE, LEFT_HAND, RIGHT_HAND = slice(0, 17), slice(23, 91), slice(91, 112), slice(112, 133)
HAND_BONES = [(0, 1), (1, 2), (2, 3), (3, 4)] + [
    (a, b) for f in range(4) for a, b in [(0, 5 + 4 * f), (5 + 4 * f, 6 + 4 * f), (6 + 4 * f, 7 + 4 * f), (7 + 4 * f, 8 + 4 * f)]
]


def rest_pose() -> np.ndarray:
    """Both hands relaxed low in front of the body, neutral face. Shape (POSE_DIM,)."""
    pose = np.zeros(POSE_DIM)
    pose[DOM_XY] = (-0.11, 0.33)
    pose[DOM_DIR] = np.radians(50)
    pose[DOM_SHAPE] = RELAXED
    pose[ND_XY] = (0.11, 0.33)
    pose[ND_DIR] = np.radians(130)
    pose[ND_SHAPE] = RELAXED
    return pose


# --- appearance -------------------------------------------------------------------------------
RGB = tuple[int, int, int]
SKIN_TONES: list[RGB] = [(255, 224, 196), (241, 194, 161), (224, 172, 135), (198, 134, 96), (160, 106, 72), (115, 74, 50)]
HAIR_COLOURS: list[RGB] = [(30, 25, 20), (70, 45, 30), (120, 85, 50), (190, 160, 110), (95, 95, 95), (20, 20, 25)]


@dataclass(frozen=True)
class SignerStyle:
    """How one signer looks and moves.

    scale: body size factor (1 = nominal); offset: neck shift as a fraction of min(width, height);
    speed: signing speed factor (> 1 = faster, durations divide by it); jitter: std of the slow
    wobble of hands and head in body units. Colours are RGB.
    """

    signer_id: str
    scale: float
    offset: tuple[float, float]
    speed: float
    jitter: float
    skin: RGB
    hair: RGB
    clothing: RGB
    background: RGB
    long_hair: bool


def _distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float)))


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def sample_signer(rng: np.random.Generator, signer_id: str, speed: float = 1.0, jitter: float = 0.003) -> SignerStyle:
    """A random-looking signer (skin, clothing and background clearly distinct colours) signing at
    `speed` (> 1 = faster) with hand/head wobble `jitter` (body units)."""
    skin = tuple(int(np.clip(c + rng.integers(-8, 9), 0, 255)) for c in SKIN_TONES[rng.integers(len(SKIN_TONES))])
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    while True:
        clothing = _hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.4))
        background = _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.55, 0.88))
        if _distance(skin, background) > 70 and _distance(skin, clothing) > 80 and _distance(clothing, background) > 90:
            break
    return SignerStyle(
        signer_id=signer_id,
        scale=float(rng.uniform(0.92, 1.05)),
        offset=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.02, 0.02))),
        speed=speed,
        jitter=jitter,
        skin=skin,  # type: ignore[arg-type]
        hair=hair,
        clothing=clothing,
        background=background,
        long_hair=bool(rng.random() < 0.4),
    )


def body_frame(style: SignerStyle, width: int, height: int) -> tuple[np.ndarray, float]:
    """Pixel position of the neck and pixels per body unit for this signer and frame size."""
    m = min(width, height)
    neck = np.array([0.5 * width + style.offset[0] * m, 0.46 * height + style.offset[1] * m])
    return neck, 0.85 * m * style.scale


# --- pose → keypoints -------------------------------------------------------------------------
def hand_points(wrist: np.ndarray, direction: np.ndarray, shape: np.ndarray, right: bool) -> np.ndarray:
    """21 hand keypoints (COCO-WholeBody hand order) in body units.

    wrist (T, 2), direction (T,) radians, shape (T, 7) → (T, 21, 2). Fingers are seen from the
    front: a curled finger's phalanges are foreshortened by the cosine of their bend, so a fist's
    fingertips fold back over the palm.
    """
    u = np.stack([np.cos(direction), np.sin(direction)], axis=-1)  # along the hand
    v = np.stack([-u[:, 1], u[:, 0]], axis=-1) if right else np.stack([u[:, 1], -u[:, 0]], axis=-1)  # thumb side
    curl, spread, abduct = shape[:, :5], shape[:, 5], shape[:, 6]
    local = np.zeros((len(wrist), 21, 2))  # (along u, along v)
    scale = np.array([PALM_LENGTH, PALM_WIDTH])

    theta = np.radians(25 + 65 * abduct)  # thumb direction, away from the hand axis
    local[:, 1] = THUMB_BASE * scale
    for j in range(3):
        angle = theta - curl[:, 0] * np.radians(40) * (j + 1)
        length = THUMB_PHALANGES[j] * (1 - 0.3 * curl[:, 0])
        local[:, 2 + j] = local[:, 1 + j] + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)

    for f in range(4):
        base = 5 + 4 * f
        angle = np.radians(SPREAD_DEG[0, f] + (SPREAD_DEG[1, f] - SPREAD_DEG[0, f]) * spread)
        along = np.stack([np.cos(angle), np.sin(angle)], -1)
        local[:, base] = KNUCKLES[f] * scale
        bend = np.zeros(len(wrist))
        for j in range(3):
            bend = bend + np.radians(CURL_DEG[j]) * curl[:, 1 + f]
            local[:, base + 1 + j] = local[:, base + j] + (PHALANGES[f, j] * np.cos(bend))[:, None] * along
    return wrist[:, None, :] + local[..., :1] * u[:, None, :] + local[..., 1:] * v[:, None, :]


def face_points(poses: np.ndarray) -> np.ndarray:
    """68 face keypoints (iBUG order) in body units. poses (T, POSE_DIM) → (T, 68, 2)."""
    t_count = len(poses)
    brows, mouth, yaw = poses[:, BROWS], poses[:, MOUTH], poses[:, YAW]
    a, b = FACE_HALF_WIDTH, FACE_CHIN
    pts = np.zeros((t_count, 68, 2))
    t = np.pi - np.arange(17) * np.pi / 16
    pts[:, 0:17] = np.stack([a * np.cos(t), b * np.sin(t)], -1)  # jaw, image left → chin → right
    arch = 0.008 * np.sin(np.pi * np.arange(5) / 4)
    brow_y = -0.038 - arch[None, :] - 0.024 * brows[:, None]
    pts[:, 17:22, 0] = np.linspace(-0.068, -0.018, 5)
    pts[:, 17:22, 1] = brow_y
    pts[:, 22:27, 0] = np.linspace(0.018, 0.068, 5)
    pts[:, 22:27, 1] = brow_y[:, ::-1]
    pts[:, 27:31, 1] = np.linspace(-0.01, 0.035, 4)  # nose bridge to tip
    pts[:, 31:36, 0] = np.linspace(-0.018, 0.018, 5)
    pts[:, 31:36, 1] = 0.045 + np.array([0.0, 0.004, 0.006, 0.004, 0.0])
    eye_h = 0.006 * (1 + 0.7 * brows)[:, None]
    ew = 0.015
    eye_x = np.array([-ew, -ew / 3, ew / 3, ew, ew / 3, -ew / 3])
    eye_sign = np.array([0, -1, -1, 0, 1, 1])
    for start, cx in ((36, -0.038), (42, 0.038)):
        pts[:, start : start + 6, 0] = cx + eye_x
        pts[:, start : start + 6, 1] = eye_sign * eye_h
    mw = (0.034 * (1 - 0.15 * mouth))[:, None]
    gap = (0.034 * mouth)[:, None]
    outer_x = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1, 0.6, 0.25, 0, -0.25, -0.6])
    outer_y = np.array([0, -0.010, -0.014, -0.011, -0.014, -0.010, 0, 0.012, 0.016, 0.017, 0.016, 0.012])
    lower = np.array([0] * 7 + [1] * 5)
    pts[:, 48:60, 0] = outer_x * mw
    pts[:, 48:60, 1] = 0.075 + outer_y + lower * gap
    inner_x = np.array([-0.8, -0.3, 0, 0.3, 0.8, 0.3, 0, -0.3])
    inner_y = np.array([0, -0.004, -0.004, -0.004, 0, 0.004, 0.004, 0.004])
    inner_lower = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    pts[:, 60:68, 0] = inner_x * mw
    pts[:, 60:68, 1] = 0.075 + inner_y + inner_lower * gap
    # A head turn moves the features across the face more than the outline.
    pts[:, :, 0] += (0.025 * yaw)[:, None]
    pts[:, 0:17, 0] -= (0.017 * yaw)[:, None]
    roll = poses[:, HEAD.start + 2]
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    x, y = pts[..., 0].copy(), pts[..., 1].copy()
    pts[..., 0], pts[..., 1] = c * x - s * y, s * x + c * y
    return pts + (HEAD_CENTER + poses[:, HEAD][:, :2])[:, None, :]


# Which side the elbow bends to, by the direction of the wrist from the shoulder (degrees, image
# coordinates, right arm): +1 (below/outside the shoulder-wrist line) for hands in front of the
# body, -1 (outside, raised) for hands at the upper face or above; in between the elbow points
# at the camera and its 2D projection slides smoothly across the line.
_BEND_DEG = [-65.0, -45.0, -25.0, 165.0, 180.0, 195.0]
_BEND_SIDE = [-1.0, 0.0, 1.0, 1.0, 0.0, -1.0]


def _arm(shoulder: np.ndarray, wrists: np.ndarray, right: bool) -> tuple[np.ndarray, np.ndarray]:
    """2D two-link inverse kinematics: wrists (T, 2) → (elbows, reachable wrists), each (T, 2)."""
    flip = np.array([1.0 if right else -1.0, 1.0])  # solve every arm as a right arm
    delta = (wrists - shoulder) * flip
    dist = np.maximum(np.linalg.norm(delta, axis=1), 1e-6)
    unit = delta / dist[:, None]
    d = np.clip(dist, abs(UPPER_ARM - FOREARM) + 1e-3, UPPER_ARM + FOREARM - 1e-3)
    a = (UPPER_ARM**2 - FOREARM**2 + d**2) / (2 * d)
    h = np.sqrt(np.maximum(UPPER_ARM**2 - a**2, 0.0))
    side = np.interp(np.degrees(np.arctan2(unit[:, 1], unit[:, 0])), _BEND_DEG, _BEND_SIDE, period=360)
    normal = np.stack([-unit[:, 1], unit[:, 0]], -1)
    elbows = unit * a[:, None] + normal * (h * side)[:, None]
    return shoulder + elbows * flip, shoulder + unit * d[:, None] * flip


def pose_keypoints(poses: np.ndarray, style: SignerStyle, width: int, height: int) -> np.ndarray:
    """COCO-WholeBody keypoints of a pose sequence: (T, POSE_DIM) → float32 (T, 133, 3).

    x, y in pixels; score 1 for drawn points inside the frame, 0 for points outside it and for
    the points the signer does not have (hips, legs, feet: x = y = 0). Points outside the frame
    keep their x, y, which `render_frame` needs; zero them before saving.
    """
    t_count = len(poses)
    xy = np.zeros((t_count, NUM_KEYPOINTS, 2))
    present = np.zeros(NUM_KEYPOINTS, bool)
    face = face_points(poses)
    r_elbow, r_wrist = _arm(R_SHOULDER, poses[:, DOM_XY], right=True)
    l_elbow, l_wrist = _arm(L_SHOULDER, poses[:, ND_XY], right=False)
    xy[:, 0] = face[:, 30]  # nose tip
    xy[:, 1] = face[:, 42:48].mean(1)  # signer's left eye is on the image right
    xy[:, 2] = face[:, 36:42].mean(1)
    xy[:, 3] = face[:, 16] + (face[:, 16] - face[:, 0]) * 0.04
    xy[:, 4] = face[:, 0] - (face[:, 16] - face[:, 0]) * 0.04
    xy[:, 5], xy[:, 6] = L_SHOULDER, R_SHOULDER
    xy[:, 7], xy[:, 8] = l_elbow, r_elbow
    xy[:, 9], xy[:, 10] = l_wrist, r_wrist
    present[0:11] = True
    xy[:, FACE] = face
    present[FACE] = True
    xy[:, LEFT_HAND] = hand_points(l_wrist, poses[:, ND_DIR], poses[:, ND_SHAPE], right=False)
    xy[:, RIGHT_HAND] = hand_points(r_wrist, poses[:, DOM_DIR], poses[:, DOM_SHAPE], right=True)
    present[LEFT_HAND] = present[RIGHT_HAND] = True

    neck, unit = body_frame(style, width, height)
    xy = neck + unit * xy
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= height - 1)
    xy[:, ~present] = 0.0
    score = (present[None, :] & inside).astype(np.float32)
    return np.concatenate([xy, score[..., None]], axis=-1).astype(np.float32)


# --- drawing ----------------------------------------------------------------------------------
SHIFT = 4  # OpenCV sub-pixel bits: smooth motion at small frame sizes
AA = cv2.LINE_AA

# Outlines in head coordinates (body units from the eye-level face centre; x right, y down).
_t = np.linspace(0, np.pi, 12)[1:-1]
_FACE_TOP = np.stack([FACE_HALF_WIDTH * np.cos(_t), -0.085 * np.sin(_t)], -1)
_t = np.linspace(0.15, np.pi - 0.15, 9)
_FRINGE = np.stack([0.097 * np.cos(_t), -0.092 * np.sin(_t)], -1)
_LONG_HAIR = np.array([[-0.115, -0.05], [-0.13, 0.19], [0.13, 0.19], [0.115, -0.05]])
_HEAD_MISC = np.array([[0.0, 0.06], [0.0, -0.035]])  # neck top, hair centre
_HEAD_SHAPES = np.vstack([_FACE_TOP, _FRINGE, _LONG_HAIR, _HEAD_MISC])
# Outlines relative to the neck (body units).
_TORSO = np.array([[-0.06, -0.02], [-0.19, -0.01], [-0.245, 0.06], [-0.25, 0.9], [0.25, 0.9], [0.245, 0.06], [0.19, -0.01], [0.06, -0.02]])
_COLLAR = np.array([[-0.045, -0.02], [0.045, -0.02], [0.0, 0.05]])
_BODY_SHAPES = np.vstack([_TORSO, _COLLAR, [[0.0, 0.01]]])
# Finger chains as hand keypoint indices; fingers start inside the palm (see _hand_shapes).
_FINGERS = [[5 + 4 * f + j for j in range(4)] for f in (3, 2, 1, 0)]  # pinky first: index on top


@dataclass(frozen=True)
class _Palette:
    background: tuple
    skin: tuple
    skin_edge: tuple
    hand_edge: tuple
    collar: tuple
    hair: tuple
    brow: tuple
    clothing: tuple
    sleeve: tuple
    sleeve_edge: tuple
    lips: tuple


def _bgr(rgb) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _scaled(rgb, factor: float) -> tuple[int, int, int]:
    return _bgr(np.clip(np.array(rgb, float) * factor, 0, 255))


@functools.lru_cache(maxsize=512)
def _palette(style: SignerStyle) -> _Palette:
    lips = np.array(style.skin, float) * 0.45 + np.array([150, 40, 50]) * 0.55
    return _Palette(
        background=_bgr(style.background),
        skin=_bgr(style.skin),
        skin_edge=_scaled(style.skin, 0.7),
        hand_edge=_scaled(style.skin, 0.62),
        collar=_scaled(style.skin, 0.92),
        hair=_bgr(style.hair),
        brow=_scaled(style.hair, 0.8) if sum(style.hair) > 150 else _bgr(style.hair),
        clothing=_bgr(style.clothing),
        sleeve=_scaled(style.clothing, 1.35),
        sleeve_edge=_scaled(style.clothing, 0.55),
        lips=_bgr(lips),
    )


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixels → OpenCV fixed point (SHIFT fractional bits), int32."""
    return np.round(points * (1 << SHIFT)).astype(np.int32)


def _hand_shapes(hand: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Palm polygon (7, 2) and finger polylines (thumb last) of one hand's 21 pixel keypoints."""
    wrist, across, along = hand[0], hand[5] - hand[17], hand[9] - hand[0]
    back = wrist - 0.2 * along  # the palm covers the wrist point
    palm = np.array([back + 0.5 * across, hand[1], hand[5], hand[9], hand[13], hand[17], back - 0.5 * across])
    fingers = [np.vstack([hand[c[0]] + 0.3 * (wrist - hand[c[0]]), hand[c]]) for c in _FINGERS]
    return palm, fingers + [hand[1:5]]


def render_frame(keypoints: np.ndarray, style: SignerStyle, width: int, height: int, background: np.ndarray | None = None) -> np.ndarray:
    """Draw the signer described by one frame's keypoints. (133, 3) → uint8 BGR (H, W, 3), on
    `background` (uint8 BGR (H, W, 3)) or on the signer's plain background colour.

    Uses x, y of every drawn point whatever its score (as `pose_keypoints` returns them).
    """
    c = _palette(style)
    if background is None:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = c.background
    else:
        img = background.copy()
    kp = keypoints[:, :2].astype(np.float64)
    unit = float(np.linalg.norm(kp[5] - kp[6])) / (L_SHOULDER[0] - R_SHOULDER[0])
    jaw0, jaw16 = kp[FACE.start], kp[FACE.start + 16]
    centre = 0.5 * (jaw0 + jaw16)
    right = (jaw16 - jaw0) / np.linalg.norm(jaw16 - jaw0)  # the head's x axis, follows its roll
    axes = np.stack([right, [-right[1], right[0]]])
    roll = float(np.degrees(np.arctan2(right[1], right[0])))
    neck = 0.5 * (kp[5] + kp[6])
    head = _fixed(centre + unit * _HEAD_SHAPES @ axes)
    face_top, fringe, long_hair = head[:10], head[10:19], head[19:23]
    neck_top, hair_centre = head[23].tolist(), head[24].tolist()
    body = _fixed(neck + unit * _BODY_SHAPES)
    torso, collar, neck_base = body[:8], body[8:11], body[11].tolist()
    p = _fixed(kp)
    pt = p.tolist()
    s = lambda v: max(1, round(v * unit))  # noqa: E731  thickness in pixels

    if style.long_hair:
        cv2.fillPoly(img, [long_hair], c.hair, AA, SHIFT)
    cv2.fillPoly(img, [torso], c.clothing, AA, SHIFT)
    cv2.line(img, neck_base, neck_top, c.skin_edge, s(0.075) + 2, AA, SHIFT)
    cv2.line(img, neck_base, neck_top, c.skin, s(0.075), AA, SHIFT)
    cv2.fillPoly(img, [collar], c.collar, AA, SHIFT)
    one = 1 << SHIFT
    for ear in (pt[3], pt[4]):
        cv2.ellipse(img, ear, (round(0.018 * unit * one), round(0.03 * unit * one)), roll, 0, 360, c.skin_edge, -1, AA, SHIFT)
        cv2.ellipse(img, ear, (round(0.014 * unit * one), round(0.026 * unit * one)), roll, 0, 360, c.skin, -1, AA, SHIFT)
    cv2.ellipse(img, hair_centre, (round(0.112 * unit * one), round(0.125 * unit * one)), roll, 0, 360, c.hair, -1, AA, SHIFT)
    face = p[FACE]
    outline = np.vstack([face[0:17], face_top])
    cv2.fillPoly(img, [outline], c.skin, AA, SHIFT)
    cv2.polylines(img, [outline], True, c.skin_edge, 1, AA, SHIFT)
    cv2.polylines(img, [fringe], False, c.hair, s(0.02), AA, SHIFT)
    cv2.polylines(img, [face[17:22], face[22:27]], False, c.brow, s(0.013), AA, SHIFT)
    cv2.fillPoly(img, [face[36:42], face[42:48]], (245, 245, 245), AA, SHIFT)
    pupil = round(0.0065 * unit * one)
    for eye in (kp[FACE.start + 36 : FACE.start + 42], kp[FACE.start + 42 : FACE.start + 48]):
        opening = round(min(0.0065 * unit, 0.5 * np.ptp(eye[:, 1]) + 0.3) * one)
        cv2.ellipse(img, _fixed(eye.mean(0)).tolist(), (pupil, opening), roll, 0, 360, (40, 30, 30), -1, AA, SHIFT)
    cv2.polylines(img, [face[27:31], face[31:36]], False, c.skin_edge, 1, AA, SHIFT)
    cv2.fillPoly(img, [face[48:60]], c.lips, AA, SHIFT)
    cv2.fillPoly(img, [face[60:68]], (35, 20, 45), AA, SHIFT)

    finger = s(0.026)
    for shoulder, elbow, wrist, hand in ((5, 7, 9, LEFT_HAND), (6, 8, 10, RIGHT_HAND)):
        cuff = _fixed(kp[elbow] + 0.8 * (kp[wrist] - kp[elbow])).tolist()
        cv2.line(img, pt[shoulder], pt[elbow], c.sleeve_edge, s(0.065) + 2, AA, SHIFT)
        cv2.line(img, pt[elbow], cuff, c.sleeve_edge, s(0.058) + 2, AA, SHIFT)
        cv2.line(img, cuff, pt[wrist], c.skin_edge, s(0.05) + 2, AA, SHIFT)
        cv2.line(img, cuff, pt[wrist], c.skin, s(0.05), AA, SHIFT)
        cv2.line(img, pt[shoulder], pt[elbow], c.sleeve, s(0.065), AA, SHIFT)
        cv2.line(img, pt[elbow], cuff, c.sleeve, s(0.058), AA, SHIFT)
        palm, fingers = _hand_shapes(kp[hand])
        palm = _fixed(palm)
        cv2.fillPoly(img, [palm], c.skin, AA, SHIFT)
        cv2.polylines(img, [palm], True, c.hand_edge, 1, AA, SHIFT)
        for chain in fingers:
            chain = _fixed(chain)
            cv2.polylines(img, [chain], False, c.hand_edge, finger + 2, AA, SHIFT)
            cv2.polylines(img, [chain], False, c.skin, finger, AA, SHIFT)
    return img


def draw_keypoints(img: np.ndarray, keypoints: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Overlay keypoints (score > 0) on a BGR image whose pixels are `scale` × the keypoints'."""
    out = img.copy()
    pt = _fixed(keypoints[:, :2].astype(np.float64) * scale).tolist()
    ok = keypoints[:, 2] > 0
    bones = [((5, 6), (5, 7), (7, 9), (6, 8), (8, 10)), [(LEFT_HAND.start + a, LEFT_HAND.start + b) for a, b in HAND_BONES], [(RIGHT_HAND.start + a, RIGHT_HAND.start + b) for a, b in HAND_BONES]]
    for pairs, colour in zip(bones, ((0, 255, 0), (255, 160, 0), (0, 200, 255))):
        for a, b in pairs:
            if ok[a] and ok[b]:
                cv2.line(out, pt[a], pt[b], colour, 1, AA, SHIFT)
    radius = round(0.4 * max(1.0, scale) * (1 << SHIFT))
    for i in np.flatnonzero(ok):
        colour = (0, 255, 0) if i < 17 else (255, 255, 0) if i < 91 else (0, 0, 255)
        cv2.circle(out, pt[i], radius, colour, -1, AA, SHIFT)
    return out
