"""jobs/translate.py: raw videos and frame folders -> glosses and text with a tiny, untrained
Sign2Text checkpoint (and a keypoint-stream Sign2Gloss one), compared with the model called by hand
on the same frames; the error messages; the sample figure (training/sample_figure.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_sign2text import _config, tiny_gloss2text, tiny_sign2gloss
from video_fixtures import H, W, make_frames, make_keypoints, write_frame_folder, write_mp4

from jobs.translate import keypoint_estimator, main, read_input, training_inputs
from models.two_stream import TwoStreamConfig, TwoStreamSLR
from pipelines.recognition_batches import RecognitionCollate
from pipelines.video_collate import VideoCollateConfig
from pipelines.vocabulary import GlossVocabulary
from training.checkpoint import load_sign2gloss, load_sign2text, save_sign2gloss, save_sign2text
from training.evaluation import decode_heads, decode_sign2text, run_model
from training.sample_figure import plot_sample

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def s2t(tmp_path_factory) -> Path:
    """A Sign2Text checkpoint joined from a tiny Sign2Gloss (RGB, 32 px) and a tiny Gloss2Text."""
    from jobs.train_sign2text import build_model

    tmp = tmp_path_factory.mktemp("s2t_ckpt")
    s2g, g2t = tiny_sign2gloss(tmp / "s2g"), tiny_gloss2text(tmp / "g2t")
    model, a, b = build_model(_config(tmp, "/nowhere", s2g, g2t))
    torch.manual_seed(1)
    with torch.no_grad():  # wide weights after the backbone: the untrained model's output then varies with its input
        for name, p in model.named_parameters():
            if p.dim() > 1 and not name.startswith("recognizer.backbones"):
                p.normal_(0.0, 0.5)
    save_sign2text(tmp / "s2t" / "model", model=model.eval(), vocab=a.vocab, tokenizer_dir=b.path / "model" / "tokenizer",
                   collate=a.collate, text=b.text)
    return tmp / "s2t"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """An mp4, a PNG folder of exactly the frames OpenCV decodes from it, another video, a 3-frame
    video, a folder without images, a file that is no video."""
    tmp = tmp_path_factory.mktemp("videos")
    write_mp4(tmp / "clip.mp4", make_frames(14, 0))
    write_mp4(tmp / "other.mp4", make_frames(17, 5))
    write_mp4(tmp / "short.mp4", make_frames(3, 1))
    write_frame_folder(tmp / "clip_frames", decode_with_opencv(tmp / "clip.mp4"), pattern="{:06d}.png", start=0)
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no frames here")
    (tmp / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    return {p.name: p for p in tmp.iterdir()}


def decode_with_opencv(path: Path) -> np.ndarray:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def reference_batch(path: Path, ck, keypoints: np.ndarray | None = None) -> dict:
    """What training fed the model for this video, built by hand: OpenCV frames stored as JPEG 90
    (preprocessing's default), the checkpoint's evaluation collate."""
    frames = decode_with_opencv(path)
    jpeg = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]
    row = {"name": path.stem, "gloss": "", "text": None, "frames": jpeg, "num_frames": len(frames), "height": H, "width": W,
           "keypoints": None if keypoints is None else keypoints.astype(np.float16)}
    return RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses, frame_stride=ck.frame_stride)([row])


def run_cli(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_video_and_frame_folder_translate_alike_and_as_the_model_does_by_hand(s2t, videos, tmp_path, capsys):
    out = tmp_path / "out" / "translations.jsonl"
    inputs = [videos["clip.mp4"], videos["clip_frames"], videos["other.mp4"]]
    code, printed, _ = run_cli(capsys, *inputs, "--checkpoint", s2t, "--out", out, "--num-beams", 2, "--batch-size", 2,
                               "--device", "cpu")
    assert code == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == printed and [r["input"] for r in written] == [str(p) for p in inputs]
    assert [r["frames"] for r in written] == [14, 14, 17] and all(set(r) == {"input", "glosses", "text", "frames"} for r in written)
    assert (written[0]["glosses"], written[0]["text"]) == (written[1]["glosses"], written[1]["text"])  # same frames
    assert (written[0]["glosses"], written[0]["text"]) != (written[2]["glosses"], written[2]["text"])  # another video

    # parity: the tensors the job feeds the model, and its outputs, equal the model on hand-made batches
    ck = load_sign2text(s2t)
    settings = training_inputs(ck)
    collate = RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses)
    mine = collate([read_input(str(videos["clip.mp4"]), "clip", settings, None).row])
    ref = reference_batch(videos["clip.mp4"], ck)
    assert mine["frames"].shape == (1, 14, 3, 32, 32) and torch.equal(mine["frames"], ref["frames"])
    for k, name in ((0, "clip.mp4"), (2, "other.mp4")):
        ref = reference_batch(videos[name], ck)
        by_hand = decode_sign2text(ck.model, [ref], ck.tokenizer, ck.vocab, num_beams=2, length_penalty=1.0, max_length=16,
                                   device=CPU)
        assert written[k]["text"] == by_hand["hyps"][0] and written[k]["glosses"] == " ".join(by_hand["gloss_hyps"][0])


def test_inputs_that_cannot_be_translated_name_the_file_and_the_reason(s2t, videos, tmp_path, capsys):
    missing = tmp_path / "nowhere.mp4"
    code, printed, err = run_cli(capsys, videos["short.mp4"], videos["broken.mp4"], missing, videos["empty"],
                                 videos["clip.mp4"], "--checkpoint", s2t, "--num-beams", 1)
    assert code == 1 and len(printed) == 5
    short, broken, gone, empty, good = printed
    assert short["error"] == (f"{videos['short.mp4']}: too short for the model: 3 frame(s) decoded, 3 after its input settings "
                              "(frame_stride 1), it needs at least 4 (one output step of its S3D per 4 frames)")
    assert broken["error"].startswith(str(videos["broken.mp4"])) and "corrupt" in broken["error"]
    assert gone["error"] == f"{missing}: video file not found"
    assert empty["error"] == f"{videos['empty']}: zero frames (no image files)"
    assert set(good) == {"input", "glosses", "text", "frames"} and good["frames"] == 14
    assert f"error: 4 of 5 input(s) not translated:\n  {short['error']}\n" in err  # also summarised on stderr

    # checkpoints of another family, or none at all, stop before any video is read
    g2t = tiny_gloss2text(tmp_path / "g2t")
    code, printed, err = run_cli(capsys, videos["clip.mp4"], "--checkpoint", g2t)
    assert code == 2 and not printed
    assert f"{g2t}: a gloss2text checkpoint; translating videos needs a sign2text checkpoint" in err
    code, _, err = run_cli(capsys, videos["clip.mp4"], "--checkpoint", tmp_path / "no_run")
    assert code == 2 and "no_run: neither a checkpoint (no model/) nor a run directory" in err


def test_keypoint_model_needs_its_back_end_and_gives_glosses_with_a_figure(videos, tmp_path, capsys):
    """A Sign2Gloss checkpoint whose keypoint stream learnt from `groundtruth` keypoints: refused
    without them, glosses only with --keypoints, equal to the model on the hand-made batch."""
    torch.manual_seed(0)
    model = TwoStreamSLR(TwoStreamConfig(num_classes=6, streams=["keypoint"], width=0.0625, keypoint_size=16, pyramid=False,
                                         head_hidden=16, head_ff=16, dropout=0.0, heatmap_sigma=1.0))
    ckpt = tmp_path / "kp_s2g"
    save_sign2gloss(ckpt / "model", model=model.eval(), vocab=GlossVocabulary(["G0", "G1", "G2"]),
                    collate=VideoCollateConfig(height=32, width=32), keypoint_backend="groundtruth")
    code, printed, err = run_cli(capsys, videos["clip.mp4"], "--checkpoint", ckpt)
    assert code == 2 and not printed
    assert "trained on `groundtruth` keypoints" in err and "pass them with --keypoints FILE.npy (one per input)" in err

    keypoints = make_keypoints(14, 0)
    np.save(tmp_path / "clip.npy", keypoints)
    code, printed, _ = run_cli(capsys, videos["clip.mp4"], "--checkpoint", ckpt, "--keypoints", tmp_path / "clip.npy",
                               "--figure", tmp_path / "figures")
    assert code == 0 and printed[0]["text"] is None and printed[0]["frames"] == 14
    ck = load_sign2gloss(ckpt)
    batch = reference_batch(videos["clip.mp4"], ck, keypoints)
    assert batch["keypoints"][0, :, 0, 2].eq(1.0).all()  # the nose is there in every frame
    settings = training_inputs(ck)
    clip = read_input(str(videos["clip.mp4"]), "clip", settings, keypoint_estimator(ck, settings, [str(tmp_path / "clip.npy")]),
                      str(tmp_path / "clip.npy"))
    mine = RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses)([clip.row])
    assert torch.equal(mine["keypoints"], batch["keypoints"]) and torch.equal(mine["frames"], batch["frames"])
    with torch.no_grad():
        ids = decode_heads(run_model(ck.model, batch, CPU, True), ["keypoint"], beam_width=5)["keypoint"][0]
    assert printed[0]["glosses"] == " ".join(ck.vocab.decode(ids))
    figure = cv2.imread(str(tmp_path / "figures" / "clip.png"))
    assert figure.shape == (round(200 * H / W) + 12 + 24, 8 * 200, 3)  # 8 frames, one text line (glosses)

    code, _, err = run_cli(capsys, videos["clip.mp4"], videos["other.mp4"], "--checkpoint", ckpt, "--keypoints",
                           tmp_path / "clip.npy")
    assert code == 2 and "--keypoints: 1 file(s) for 2 input(s); give one per input" in err


def test_frames_are_made_as_the_training_shards_were(s2t, videos, tmp_path):
    """The checkpoint's run config names its shards; their manifest's `frames` and JPEG settings apply."""
    import shutil

    from pipelines.shards import SCHEMA_VERSION

    ckpt = tmp_path / "ckpt"
    shutil.copytree(s2t, ckpt)
    shards = tmp_path / "shards" / "toy"
    shards.mkdir(parents=True)
    (shards / "manifest.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "frame_storage": "jpeg",
        "config": {"frames": {"resize": "fixed", "width": 24, "height": 20, "frame_stride": 2},
                   "keypoints": {"backend": "none"}, "shards": {"jpeg_quality": 50}}}))
    (ckpt / "config.yaml").write_text(f"data:\n  shards: {tmp_path / 'shards'}\n  dataset: toy\n")
    settings = training_inputs(load_sign2text(ckpt))
    assert (settings.frames.width, settings.frames.height, settings.frames.frame_stride, settings.jpeg_quality) == (24, 20, 2, 50)
    clip = read_input(str(videos["clip.mp4"]), "clip", settings, None)
    assert clip.frames.shape == (7, 20, 24, 3) and clip.source_frames == 14 and len(clip.row["frames"]) == 7
    assert cv2.imdecode(np.frombuffer(clip.row["frames"][0], np.uint8), cv2.IMREAD_COLOR).shape == (20, 24, 3)


def test_sample_figure_size_and_checks(tmp_path):
    frames, keypoints = make_frames(5, 2), make_keypoints(5, 2)
    plot_sample(frames, keypoints, glosses_hyp="G0 G1", glosses_ref="G0 G2", text_hyp="regen im norden",
                text_ref="sonne im süden", path=tmp_path / "a.png", n_frames=8)
    image = cv2.imread(str(tmp_path / "a.png"))
    assert image.shape == (round(200 * H / W) + 12 + 4 * 24, 5 * 200, 3)  # all 5 frames, 4 text lines
    # the frames are drawn: the white square of frame 0 appears in the first panel, not on a blank canvas
    assert image[: round(200 * H / W), :195].max() == 255 and image[: round(200 * H / W), :195].min() < 200

    plot_sample(make_frames(30), None, glosses_hyp="G1", glosses_ref=None, text_hyp=None, text_ref=None,
                path=tmp_path / "b.png", n_frames=3)
    assert cv2.imread(str(tmp_path / "b.png")).shape == (round(200 * H / W) + 12 + 24, 3 * 200, 3)

    with pytest.raises(ValueError, match=r"4 frames of keypoints for 5 video frames: they must match"):
        plot_sample(frames, keypoints[:4], glosses_hyp="", glosses_ref=None, text_hyp=None, text_ref=None, path=tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"frames must be uint8 RGB \(T, H, W, 3\)"):
        plot_sample(frames[..., 0], None, glosses_hyp="", glosses_ref=None, text_hyp=None, text_ref=None, path=tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
