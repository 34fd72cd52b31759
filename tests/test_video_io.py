import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.video_io import FrameSpec, Geometry, VideoError, VideoSource, decode_video, locate, plan_geometry, read_frames
from video_fixtures import H, W, make_frames, square_position, write_frame_folder, write_mp4, zip_frame_folders


def centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) centroid, in pixel-index units, of the bright square."""
    mask = frame.mean(axis=2) > 200
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_mp4_decodes_every_frame_in_rgb(tmp_path):
    frames = make_frames(10, index=1)
    write_mp4(tmp_path / "v.mp4", frames)
    video = decode_video(locate(str(tmp_path), "v.mp4"), FrameSpec(), expected_frames=10)
    assert video.frames.shape == (10, H, W, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(25.0)
    assert video.warnings == []
    # mp4v is lossy: compare the square's position and the background colour (RGB order).
    for t in range(10):
        np.testing.assert_allclose(centroid(video.frames[t]), centroid(frames[t]), atol=0.6)
    np.testing.assert_allclose(video.frames[0, -1, -1], frames[0, -1, -1], atol=12)


def test_phoenix_glob_folder_and_zip_give_identical_exact_frames(tmp_path):
    frames = make_frames(12, index=2)
    write_frame_folder(tmp_path / "fullFrame" / "dev" / "vid1" / "1", frames)
    zip_frame_folders({"dev/vid1": frames}, tmp_path / "phoenix.zip")
    by_glob = read_frames(locate(str(tmp_path / "fullFrame" / "dev"), "vid1/1/*.png"))[0]
    by_folder = read_frames(locate(str(tmp_path / "fullFrame" / "dev"), "vid1"))[0]  # descends into "1/"
    by_zip = read_frames(locate(str(tmp_path / "phoenix.zip"), "images/dev/vid1"))[0]
    by_at = read_frames(locate("", f"{tmp_path}/phoenix.zip@images/dev/vid1"))[0]  # the public code's form
    for got in (by_glob, by_folder, by_zip, by_at):
        np.testing.assert_array_equal(got, frames)


def test_csl_jpg_folder_is_sorted_naturally_and_uri_paths_work(tmp_path):
    frames = make_frames(12, index=3)
    write_frame_folder(tmp_path / "sentence_frames" / "S1", frames, pattern="{}.jpg", start=0)  # 0.jpg ... 11.jpg: natural order
    local = read_frames(locate(str(tmp_path), "sentence_frames/S1"))[0]
    via_uri = read_frames(locate(f"file://{tmp_path}", "sentence_frames/S1"))[0]
    np.testing.assert_array_equal(local, via_uri)
    assert len(local) == 12
    for t in range(12):  # JPEG is lossy; the order is what matters
        np.testing.assert_allclose(centroid(local[t]), centroid(frames[t]), atol=0.6)


def test_grayscale_and_rgba_frames_are_converted_with_a_warning(tmp_path):
    frames = make_frames(3)
    gray = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    (tmp_path / "g").mkdir()
    cv2.imwrite(str(tmp_path / "g" / "images0001.png"), gray)
    rgba = np.dstack([frames[1][..., ::-1], np.full((H, W), 255, np.uint8)])  # BGRA for cv2
    cv2.imwrite(str(tmp_path / "g" / "images0002.png"), rgba)
    got, _, _, warnings = read_frames(locate(str(tmp_path), "g"))
    assert got.shape == (2, H, W, 3)
    np.testing.assert_array_equal(got[0, ..., 0], gray)
    np.testing.assert_array_equal(got[0, ..., 0], got[0, ..., 2])
    np.testing.assert_array_equal(got[1], frames[1])
    assert warnings == ["RGBA frames: alpha channel dropped", "grayscale frames converted to RGB"]


@pytest.mark.parametrize(
    "case, stage, fragment",
    [
        ("missing", "locate", "not found"),
        ("garbage", "decode", "cannot open video"),
        ("truncated", "decode", "cannot open video"),
        ("empty_folder", "decode", "zero frames"),
        ("count", "check", "annotation says 20"),
        ("bad_member", "decode", "unreadable archive member"),
        ("not_a_zip", "decode", "unreadable zip archive"),
        ("bad_png", "decode", "unreadable image"),
    ],
)
def test_bad_input_raises_a_video_error_naming_stage_and_file(tmp_path, case, stage, fragment):
    frames = make_frames(8)
    expected = None
    if case == "missing":
        source = locate(str(tmp_path), "nope.mp4")
    elif case in ("garbage", "truncated"):
        write_mp4(tmp_path / "v.mp4", frames)
        data = (tmp_path / "v.mp4").read_bytes()
        (tmp_path / "v.mp4").write_bytes(b"\x00garbage" * 100 if case == "garbage" else data[: len(data) // 2])
        source = locate(str(tmp_path), "v.mp4")
    elif case == "empty_folder":
        (tmp_path / "e" / "1").mkdir(parents=True)
        source = locate(str(tmp_path), "e/1/*.png")
    elif case == "count":
        write_mp4(tmp_path / "v.mp4", frames)
        source, expected = locate(str(tmp_path), "v.mp4"), 20
    elif case == "bad_member":
        zip_frame_folders({"v": frames}, tmp_path / "a.zip")
        raw = bytearray((tmp_path / "a.zip").read_bytes())
        with zipfile.ZipFile(tmp_path / "a.zip") as z:
            info = z.getinfo("images/v/images0003.png")
        data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        raw[data_start + 20] ^= 0xFF  # flips a byte: CRC mismatch on read
        (tmp_path / "a.zip").write_bytes(bytes(raw))
        source = locate(str(tmp_path / "a.zip"), "images/v")
    elif case == "not_a_zip":
        (tmp_path / "b.zip").write_bytes(b"not a zip at all")
        source = locate(str(tmp_path / "b.zip"), "images/v")
    else:
        write_frame_folder(tmp_path / "p", frames[:2])
        (tmp_path / "p" / "images0002.png").write_bytes(b"\x89PNG broken")
        source = locate(str(tmp_path), "p")
    with pytest.raises(VideoError) as info:
        decode_video(source, FrameSpec(), expected)
    assert info.value.stage == stage
    assert fragment in info.value.message
    assert str(tmp_path) in info.value.message


def test_frame_count_within_tolerance_is_accepted(tmp_path):
    write_mp4(tmp_path / "v.mp4", make_frames(8))
    assert len(decode_video(locate(str(tmp_path), "v.mp4"), FrameSpec(frame_count_tolerance=2), 10).frames) == 8


@pytest.mark.parametrize(
    "spec, size",
    [
        (FrameSpec(resize="fixed", width=24, height=30), (24, 30)),
        (FrameSpec(resize="short_side", short_side=20), (24, 20)),
        (FrameSpec(resize="fit", width=30, height=30), (30, 25)),
        (FrameSpec(crop=[8, 4, 40, 36], resize="fixed", width=64, height=64), (64, 64)),
        (FrameSpec(crop=[0, 0, 30, 40]), (30, 40)),
    ],
)
def test_crop_resize_moves_content_exactly_as_geometry_says(tmp_path, spec, size):
    frames = make_frames(6, index=4)
    write_frame_folder(tmp_path / "f", frames)
    video = decode_video(locate(str(tmp_path), "f"), spec)
    assert video.frames.shape[1:3] == (size[1], size[0])
    for t in range(6):
        x, y = square_position(t, 4)
        if spec.crop and not (spec.crop[0] <= x and x + 8 <= spec.crop[2] and spec.crop[1] <= y and y + 8 <= spec.crop[3]):
            continue
        expected = video.geometry.apply(np.array([x + 3.5, y + 3.5]))
        np.testing.assert_allclose(centroid(video.frames[t]), expected, atol=0.35)


def test_subsampling_keeps_every_kth_frame_and_reports_indices(tmp_path):
    frames = make_frames(11)
    write_frame_folder(tmp_path / "f", frames)
    video = decode_video(locate(str(tmp_path), "f"), FrameSpec(frame_stride=3, max_frames=3))
    np.testing.assert_array_equal(video.indices, [0, 3, 6])
    np.testing.assert_array_equal(video.frames, frames[[0, 3, 6]])
    assert video.source_frames == 11


def test_geometry_is_identity_without_crop_or_resize():
    box, out, g = plan_geometry(40, 48, FrameSpec())
    assert box == (0, 0, 48, 40) and out == (48, 40) and g == Geometry()
    np.testing.assert_array_equal(g.apply(np.array([[3.0, 7.0]])), [[3.0, 7.0]])


def test_locate_recognises_layouts():
    assert locate("/d", "v/x.mp4") == VideoSource("file", "/d/v/x.mp4")
    assert locate("/d", "n/1/*.png") == VideoSource("images", "/d/n/1/*.png")
    assert locate("/d/a.zip", "images/n") == VideoSource("zip", "images/n", "/d/a.zip")
    assert locate("s3://bucket/videos", "n.avi") == VideoSource("file", "s3://bucket/videos/n.avi")


def test_frame_spec_rejects_incomplete_resize():
    with pytest.raises(ValueError, match="needs width and height"):
        FrameSpec(resize="fixed", width=10)
