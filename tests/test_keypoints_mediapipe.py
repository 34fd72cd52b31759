"""MediaPipe Holistic back-end on a real photograph (scikit-image's astronaut), animated."""

import importlib.util
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pipelines.keypoints.base import FACE, LEFT_HAND, NOSE, RIGHT_HAND, MediaPipeConfig, VideoFrames
from pipelines.keypoints.mediapipe_holistic import FACE_MESH_68, POSE_TO_COCO, holistic_to_coco_wholebody
from pipelines.video_io import Geometry

needs_mediapipe = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None, reason="mediapipe not installed: run `bash scripts/install_keypoints.sh mediapipe`"
)
SIZE = 320


def astronaut_video(num_frames: int = 8) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames (T, 320, 320, 3) RGB: the photo shifted and scaled per frame, and each frame's
    face box (x0, y0, x1, y1). The box on the original 512x512 photo is what OpenCV 4's Haar
    frontal-face detector finds there (x 177, y 66, 95 x 95; OpenCV 5 dropped the detector)."""
    from skimage.data import astronaut

    image = astronaut()
    assert image.shape == (512, 512, 3)
    x, y, w, h = 177, 66, 95, 95
    box = np.array([[x, y], [x + w, y + h]], np.float32)
    frames, boxes = [], []
    for t in range(num_frames):
        s = 0.55 + 0.04 * t
        tx, ty = 10 + 6 * t - 20 * (t % 2), 30 - 5 * t
        m = np.array([[s, 0, tx], [0, s, ty]], np.float32)
        frames.append(cv2.warpAffine(image, m, (SIZE, SIZE), borderValue=(128, 128, 128)))
        boxes.append((box * s + [tx, ty]).ravel())
    return np.stack(frames), boxes


def inside(xy, box, margin=0.0) -> bool:
    x0, y0, x1, y1 = box
    return x0 - margin <= xy[0] <= x1 + margin and y0 - margin <= xy[1] <= y1 + margin


def test_mapping_tables_are_complete_and_consistent():
    assert len(FACE_MESH_68) == 68 and len(set(FACE_MESH_68)) == 68 and max(FACE_MESH_68) < 468
    assert sorted(POSE_TO_COCO)[:17] == list(range(17)) and 18 not in POSE_TO_COCO and 21 not in POSE_TO_COCO


def test_conversion_places_landmarks_by_hand_computed_indices():
    def lm(n, base, vis=None):
        return SimpleNamespace(landmark=[SimpleNamespace(x=(base + i) / 1000, y=0.5, **({} if vis is None else {"visibility": vis})) for i in range(n)])

    result = SimpleNamespace(pose_landmarks=lm(33, 0, 0.8), face_landmarks=lm(468, 100), left_hand_landmarks=None, right_hand_landmarks=lm(21, 700))
    kp = holistic_to_coco_wholebody(result, width=1000, height=10)
    assert kp.shape == (133, 3)
    np.testing.assert_allclose(kp[9], [15 - 0.5, 4.5, 0.8])  # COCO left wrist <- pose 15
    np.testing.assert_allclose(kp[19], [29 - 0.5, 4.5, 0.8])  # left heel <- pose 29
    np.testing.assert_allclose(kp[23 + 30], [100 + 4 - 0.5, 4.5, 1.0])  # nose tip (iBUG 30) <- mesh 4
    np.testing.assert_allclose(kp[RIGHT_HAND][:, 0], np.arange(700, 721) - 0.5)
    assert (kp[LEFT_HAND] == 0).all() and (kp[[18, 21]] == 0).all()


@needs_mediapipe
def test_holistic_puts_the_nose_on_the_face_in_every_frame():
    from pipelines.keypoints.mediapipe_holistic import MediaPipeHolistic

    frames, boxes = astronaut_video()
    est = MediaPipeHolistic(MediaPipeConfig())
    [kp] = est.estimate([VideoFrames("astronaut", frames, np.arange(len(frames)), Geometry())])
    assert kp.shape == (8, 133, 3) and kp.dtype == np.float32
    assert ((kp[..., 2] >= 0) & (kp[..., 2] <= 1)).all()
    for t in range(len(frames)):
        assert kp[t, NOSE, 2] > 0.5
        assert inside(kp[t, NOSE, :2], boxes[t]), (t, kp[t, NOSE], boxes[t])
        face = kp[t, FACE]
        assert (face[:, 2] == 1).all()
        assert np.mean([inside(p, boxes[t], margin=0.25 * (boxes[t][2] - boxes[t][0])) for p in face[:, :2]]) > 0.9
    assert (kp[:, [18, 21]] == 0).all()  # no small toes in MediaPipe
    # A second video gives the same result as when it is the first one: the graph is reset.
    [again] = est.estimate([VideoFrames("astronaut", frames, np.arange(len(frames)), Geometry())])
    np.testing.assert_array_equal(again, kp)


@needs_mediapipe
def test_mediapipe_backend_in_the_ray_pipeline(ray_local, tmp_path):
    """The whole job with the mediapipe actor: an mp4 of the animated astronaut."""
    from jobs.preprocess import PreprocessConfig, run
    from pipelines.shards import read_shards
    from video_fixtures import write_mp4

    frames, boxes = astronaut_video(6)
    lang = tmp_path / "corpus" / "xx"
    write_mp4(lang / "videos" / "astro.mp4", frames)
    (lang / "xx.train.corpus.csv").write_text("name|video|start|end|speaker|orth|translation\nastro|videos/astro.mp4|0|5|S|A|t\n")
    cfg = PreprocessConfig.model_validate({
        "out_dir": str(tmp_path / "out"), "splits": ["train"],
        "corpus": {"name": "synthetic", "format": "synthetic", "language": "xx", "root": str(tmp_path / "corpus")},
        "frames": {"resize": "fixed", "width": 160, "height": 160},
        "keypoints": {"backend": "mediapipe"},
        "resources": {"decode_cpus": 0.5, "encode_cpus": 0.5, "keypoint_cpus": 0.5},
    })
    [result] = run(cfg)
    assert result.error_share == 0
    [row] = read_shards(str(tmp_path / "out"), "synthetic", "train").take_all()
    assert row["keypoint_backend"] == "mediapipe" and row["keypoints"].shape == (6, 133, 3)
    for t in range(6):  # stored frames are half size: the face box halves too
        box = (boxes[t] + 0.5) * 0.5 - 0.5
        assert inside(row["keypoints"][t, NOSE, :2].astype(np.float32), box, margin=1.0)
