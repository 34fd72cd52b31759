"""`mediapipe` back-end: MediaPipe Holistic 0.10.14 mapped into the COCO-WholeBody 133 layout.

Body: the 17 COCO points from the 33 pose landmarks (score = the landmark's visibility); feet:
big toe <- foot index, heel <- heel (small toes absent); face: the 68 iBUG points from the
468-point face mesh (the correspondences below; score 1 when the face is found); hands: the 21
hand landmarks, whose order equals COCO-WholeBody's (score 1 when the hand is found). Holistic's
left/right are the signer's, as in COCO. Everything else has score 0.

The models ship in the wheel (model_complexity=1 only); nothing is downloaded. Install with
`bash scripts/install_keypoints.sh mediapipe`.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from pipelines.keypoints.base import FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND, MediaPipeConfig, VideoFrames

# COCO-WholeBody index -> MediaPipe pose landmark index.
POSE_TO_COCO = {
    0: 0,  # nose
    1: 2, 2: 5,  # eyes (left, right)
    3: 7, 4: 8,  # ears
    5: 11, 6: 12,  # shoulders
    7: 13, 8: 14,  # elbows
    9: 15, 10: 16,  # wrists
    11: 23, 12: 24,  # hips
    13: 25, 14: 26,  # knees
    15: 27, 16: 28,  # ankles
    17: 31, 19: 29,  # left big toe <- left foot index, left heel
    20: 32, 22: 30,  # right big toe <- right foot index, right heel
}
# The 68 iBUG face points (COCO-WholeBody 23..90) -> face mesh vertex: jaw (17, image left to
# right), eyebrows (5 + 5), nose bridge (4), nostrils (5), eyes (6 + 6), outer lips (12), inner lips (8).
FACE_MESH_68 = [
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    168, 197, 5, 4,
    75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
]


def _protobuf_compat() -> None:
    """mediapipe 0.10.14 calls `GetPrototype`, which protobuf 6 removed (Ray needs protobuf >= 6):
    restore it as the documented replacement, `message_factory.GetMessageClass`."""
    from google.protobuf import message_factory, symbol_database

    def get_prototype(self, descriptor):
        return message_factory.GetMessageClass(descriptor)

    for cls in (message_factory.MessageFactory, symbol_database.SymbolDatabase):
        if not hasattr(cls, "GetPrototype"):
            cls.GetPrototype = get_prototype


def import_mediapipe():
    """`mediapipe` (0.10.14), or ImportError saying how to install it."""
    _protobuf_compat()
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise ImportError("keypoint back-end 'mediapipe' needs mediapipe==0.10.14: run `bash scripts/install_keypoints.sh mediapipe`") from exc
    if mp.__version__ != "0.10.14":
        raise ImportError(f"keypoint back-end 'mediapipe' needs mediapipe==0.10.14 (its models ship in the wheel), found {mp.__version__}")
    return mp


def holistic_to_coco_wholebody(result, width: int, height: int) -> np.ndarray:
    """One frame's Holistic result -> float32 (133, 3): x, y in pixels, score."""
    out = np.zeros((NUM_KEYPOINTS, 3), np.float32)

    def points(landmarks) -> np.ndarray:
        return np.array([(p.x * width - 0.5, p.y * height - 0.5, getattr(p, "visibility", 1.0)) for p in landmarks.landmark], np.float32)

    if result.pose_landmarks is not None:
        pose = points(result.pose_landmarks)
        for coco, mp_index in POSE_TO_COCO.items():
            out[coco] = pose[mp_index]
    if result.face_landmarks is not None:
        face = points(result.face_landmarks)
        out[FACE, :2] = face[FACE_MESH_68, :2]
        out[FACE, 2] = 1.0
    for hand, where in ((result.left_hand_landmarks, LEFT_HAND), (result.right_hand_landmarks, RIGHT_HAND)):
        if hand is not None:
            out[where, :2] = points(hand)[:, :2]
            out[where, 2] = 1.0
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    out[out[:, 2] <= 0] = 0.0
    return out


class MediaPipeHolistic:
    name = "mediapipe"

    def __init__(self, config: MediaPipeConfig):
        mp = import_mediapipe()
        with warnings.catch_warnings():  # protobuf 6 deprecates FieldDescriptor.label, which mediapipe reads
            warnings.simplefilter("ignore", DeprecationWarning)
            self.holistic = self._make(mp, config)

    @staticmethod
    def _make(mp, config: MediaPipeConfig):
        return mp.solutions.holistic.Holistic(
            static_image_mode=config.static_image_mode,
            model_complexity=config.model_complexity,
            smooth_landmarks=config.smooth_landmarks,
            refine_face_landmarks=config.refine_face_landmarks,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence,
        )

    def estimate(self, videos: Sequence[VideoFrames]) -> list[np.ndarray]:
        out = []
        for v in videos:
            self.holistic.reset()  # tracking state must not leak from one video into the next
            _, h, w, _ = v.frames.shape
            out.append(np.stack([holistic_to_coco_wholebody(self.holistic.process(np.ascontiguousarray(f)), w, h) for f in v.frames])
                       if len(v.frames) else np.zeros((0, NUM_KEYPOINTS, 3), np.float32))
        return out

    def close(self) -> None:
        self.holistic.close()
