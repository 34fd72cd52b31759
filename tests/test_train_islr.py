"""Multilingual isolated-sign recognition (jobs/train_islr.py, models/islr.py, pipelines/islr_batches.py,
metrics/classification.py): the 16-frame rule, class thresholds, the summed label-smoothed loss and
top-k metrics on hand cases, per-language heads, and a 2-epoch run on Ray Train from two
hand-written dictionaries (checkpoint saved, loaded and scoring dev as the run did; resume)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.config import ConfigError, load_config
from jobs.build_dictionary import DictionaryConfig
from jobs.train_islr import ISLRRecipeConfig, evaluate_clips, run
from metrics.classification import topk_accuracy
from models.islr import ISLRConfig, ISLRModel, islr_loss, load_encoder_from_sign2gloss
from pipelines.islr_batches import ISLRCollate, select_classes, temporal_window
from pipelines.video_collate import VideoCollateConfig

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/islr/tiny.yaml"


# ---- clips, classes, loss, metrics on hand cases ------------------------------------------------------------


def test_clips_are_padded_or_cut_to_16_frames():
    np.testing.assert_array_equal(temporal_window(16, 16, train=False), np.arange(16))
    np.testing.assert_array_equal(temporal_window(21, 16, train=False), np.arange(2, 18))  # centred: (21 - 16) // 2 = 2
    np.testing.assert_array_equal(temporal_window(10, 16, train=False), [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9])
    np.testing.assert_array_equal(temporal_window(1, 16, train=False), np.zeros(16))
    np.testing.assert_array_equal(temporal_window(10, 16, train=True, rng=np.random.default_rng(0)), temporal_window(10, 16, train=False))
    rng = np.random.default_rng(0)
    starts = Counter()
    for _ in range(200):
        w = temporal_window(20, 16, train=True, rng=rng)
        assert np.array_equal(w, np.arange(w[0], w[0] + 16))
        starts[int(w[0])] += 1
    assert sorted(starts) == [0, 1, 2, 3, 4]  # every start that keeps the window inside the clip
    with pytest.raises(ValueError, match="at least one frame"):
        temporal_window(0, 16, train=False)


def _clip_row(name: str, language: str, gloss: str, n: int) -> dict:
    """Frame k is flat grey at level 10 k."""
    frames = np.repeat((np.arange(n, dtype=np.uint8) * 10)[:, None, None, None], 8 * 8 * 3).reshape(n, 8, 8, 3)
    return {"name": name, "language": language, "gloss": gloss, "num_frames": n, "height": 8, "width": 8, "frames": frames}


def test_collate_brings_clips_to_16_frames_with_language_and_class():
    classes = {"aaa": ["X", "Y"], "bbb": ["P"]}
    collate = ISLRCollate(VideoCollateConfig(height=8, width=8), train=False, classes=classes, clip_frames=16)
    batch = collate([_clip_row("c0", "bbb", "P", 10), _clip_row("c1", "aaa", "Y", 21)])
    assert batch["frames"].shape == (2, 16, 3, 8, 8) and batch["frame_lengths"].tolist() == [16, 16]
    levels = (batch["frames"][:, :, 0, 0, 0] * 255).round().long()
    assert levels[0].tolist() == [10 * i for i in temporal_window(10, 16, train=False)]
    assert levels[1].tolist() == [10 * i for i in range(2, 18)]
    assert batch["language"].tolist() == [1, 0] and batch["targets"].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"clip c2: aaa gloss 'Z' is not one of the classes"):
        collate([_clip_row("c2", "aaa", "Z", 4)])


def test_classes_rarer_than_each_languages_threshold_are_dropped():
    counts = {"aaa": Counter(X=8, Y=7, Z=20), "bbb": Counter(P=19, Q=20, R=25)}
    assert select_classes(counts, {"aaa": 8, "bbb": 20}) == {"aaa": ["X", "Z"], "bbb": ["Q", "R"]}
    assert select_classes(counts, {"aaa": 1, "bbb": 26}) == {"aaa": ["X", "Y", "Z"], "bbb": []}


def _smoothed_ce(z: np.ndarray, y: int, eps: float) -> float:
    """-(1 - eps) log p_y - eps / C sum_c log p_c, by hand."""
    logp = z - np.log(np.exp(z).sum())
    return float(-(1 - eps) * logp[y] - eps * logp.mean())


def test_loss_is_the_sum_of_each_languages_label_smoothed_cross_entropy():
    za = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]])  # head aaa on clips 0, 1, 2
    zb = np.array([[0.3, -0.2], [1.5, 0.5], [0.0, 4.0]])  # head bbb on clips 0, 1, 2
    logits = {"aaa": torch.tensor(za, requires_grad=True), "bbb": torch.tensor(zb, requires_grad=True)}
    language, targets = torch.tensor([0, 1, 0]), torch.tensor([2, 1, 0])
    total, parts = islr_loss(logits, language, targets, label_smoothing=0.2)
    want_a = (_smoothed_ce(za[0], 2, 0.2) + _smoothed_ce(za[2], 0, 0.2)) / 2  # the mean over aaa's clips
    want_b = _smoothed_ce(zb[1], 1, 0.2)
    assert parts == pytest.approx({"aaa": want_a, "bbb": want_b}) and float(total.detach()) == pytest.approx(want_a + want_b)
    total.backward()
    assert logits["bbb"].grad[[0, 2]].abs().sum() == 0 and logits["bbb"].grad[1].abs().sum() > 0  # only its own clips

    only_a = {k: v.detach().requires_grad_() for k, v in logits.items()}
    total, parts = islr_loss(only_a, torch.tensor([0, 0, 0]), targets, label_smoothing=0.2)
    assert parts["bbb"] == 0.0 and float(total.detach()) == pytest.approx(np.mean([_smoothed_ce(za[i], int(targets[i]), 0.2) for i in range(3)]))
    total.backward()
    assert only_a["bbb"].grad is not None and only_a["bbb"].grad.abs().sum() == 0  # in the graph, no gradient


def test_top1_top5_per_instance_and_per_class_on_a_hand_case():
    scores = np.array([
        [9, 1, 2, 3, 4, 5, 6],  # target 0: rank 1
        [1, 9, 8, 7, 6, 5, 4],  # target 6: 6 classes above -> outside top 5
        [1, 2, 9, 8, 7, 6, 5],  # target 6: 4 above -> top 5, not top 1
        [5, 5, 0, 0, 0, 0, 0],  # target 1: tied with class 0 -> counts as top 1
        [0, 1, 2, 3, 4, 5, 6],  # target 0: last
    ], float)
    targets = np.array([0, 6, 6, 1, 0])
    got = topk_accuracy(scores, targets, (1, 5))
    # per instance: top-1 clips 0, 3 -> 2/5; top-5 clips 0, 2, 3 -> 3/5
    # per class: class 0 (clips 0, 4): top-1 1/2, top-5 1/2; class 6 (clips 1, 2): 0, 1/2; class 1 (clip 3): 1, 1
    assert got == pytest.approx({"top1": 40.0, "top5": 60.0, "class_top1": 100 * (0.5 + 0 + 1) / 3,
                                 "class_top5": 100 * (0.5 + 0.5 + 1) / 3})
    with pytest.raises(ValueError, match="class indices in 0..6"):
        topk_accuracy(scores, np.array([0, 0, 0, 0, 7]))


def test_one_head_per_language_over_either_encoder(one_torch_thread):
    model = ISLRModel(ISLRConfig(num_classes={"aaa": 3, "bbb": 5}, width=0.0625, rgb_size=32, dropout=0.0)).eval()
    frames = torch.rand(2, 16, 3, 24, 24)
    out = model(frames)
    assert list(out) == ["aaa", "bbb"] and out["aaa"].shape == (2, 3) and out["bbb"].shape == (2, 5)
    h = model.features(frames)
    assert h.shape == (2, model.encoder.out_channels)
    assert torch.allclose(out["bbb"], model.heads["bbb"](h), atol=1e-6)  # the same features under each head

    from models.two_stream import TwoStreamConfig, TwoStreamSLR

    sizes = {"width": 0.0625, "rgb_size": 32, "keypoint_size": 8, "heatmap_sigma": 1.0, "lateral_kernel": [3, 3, 3]}
    two = ISLRModel(ISLRConfig(num_classes={"aaa": 3}, encoder="two_stream", two_stream=sizes)).eval()
    assert two.config.uses_keypoints and not len(two.encoder.heads)
    keypoints = torch.rand(2, 16, 133, 3) * 24
    assert two(frames, keypoints)["aaa"].shape == (2, 3)
    slr = TwoStreamSLR(TwoStreamConfig(num_classes=6, **sizes))
    copied = load_encoder_from_sign2gloss(two, slr.state_dict())
    assert any(k.startswith("rgb_to_keypoint.") for k in copied)
    assert all(torch.equal(v, slr.state_dict()[k]) for k, v in two.encoder.state_dict().items() if k in copied)
    load_encoder_from_sign2gloss(model, TwoStreamSLR(TwoStreamConfig(num_classes=6, streams=("rgb",), width=0.0625, rgb_size=32)).state_dict())
    with pytest.raises(ValueError, match="same width needed"):
        load_encoder_from_sign2gloss(model, TwoStreamSLR(TwoStreamConfig(num_classes=6, streams=("rgb",), width=0.125, rgb_size=32)).state_dict())


def test_shipped_configs_validate_and_errors_are_named():
    tiny = load_config(ISLRRecipeConfig, TINY)
    assert tiny.train.label_smoothing == 0.2 and tiny.data.clip_frames == 16 and len(tiny.data.languages) == 2
    demo = load_config(ISLRRecipeConfig, REPO / "configs/islr/demo.yaml")
    assert [s.dictionary.split("/")[-1] for s in demo.data.languages] == ["synthetic-sgsl-a", "synthetic-sgsl-b"]
    # the RGB stream of the sgsl-a SingleStream run that cut the dictionary (91.7 % of the shared signs mapped right)
    demo_model = demo.model_config_for({"sgsl-a": ["x"]})
    assert not demo_model.uses_keypoints and demo_model.two_stream_config().streams == ("rgb",) and demo.train.max_minutes
    assert demo.pretrained.sign2gloss == load_config(DictionaryConfig, REPO / "configs/dictionary/demo.yaml").checkpoint
    with pytest.raises(ConfigError, match="num_classes is set from the dictionaries"):
        load_config(ISLRRecipeConfig, TINY, ["model.num_classes={a: 2}"])
    with pytest.raises(ConfigError, match="data.languages.0.min_cont: unknown key"):
        load_config(ISLRRecipeConfig, TINY, ["data.languages=[{dictionary: d, min_cont: 3}]"])


# ---- end to end on Ray Train ----------------------------------------------------------------------------------


PLAN = {"aaa": {"train": ["X"] * 6 + ["Y"] * 4 + ["Z"], "dev": ["X", "X", "Y", "Z"]},
        "bbb": {"train": ["P"] * 5 + ["Q"] * 3, "dev": ["P", "Q"]}}


def write_dictionary(root: Path, language: str, plan: dict[str, list[str]]) -> Path:
    """A dictionary folder as jobs/build_dictionary.py lays it out: one clip per source video of
    10-24 frames (video_fixtures' moving square, JPEG), one block per split."""
    from video_fixtures import H, W, make_frames, make_keypoints

    from pipelines.dictionary import FORMAT, VERSION, cut_clips, dictionary_schema
    from pipelines.shards import MANIFEST, DatasetDir, write_block

    directory, splits = DatasetDir(str(root)), {}
    for split, glosses in plan.items():
        clips = []
        for i, gloss in enumerate(glosses):
            n = 10 + (7 * i) % 15
            row = {"name": f"{language}_{split}_{i}", "split": split, "signer": "S", "language": language, "gloss": gloss,
                   "num_frames": n, "source_frames": n, "frame_indices": np.arange(n), "fps": 25.0, "height": H, "width": W,
                   "frames": [cv2.imencode(".jpg", f)[1].tobytes() for f in make_frames(n, i)],
                   "keypoints": make_keypoints(n, i).astype(np.float16), "keypoint_backend": "groundtruth"}
            clips += cut_clips(row, [gloss], np.array([[0, n]]), [1.0])
        receipt = write_block(directory, split, 0, clips, [], videos=len(glosses), config_hash="k",
                              schema=dictionary_schema("jpeg", "float16"), max_shard_bytes=2**30)
        splits[split] = {"shards": [asdict(f) for f in receipt.files]}
    directory.write_json(MANIFEST, {"format": FORMAT, "version": VERSION, "language": language, "splits": splits})
    return root


def test_two_languages_train_end_to_end_save_load_and_resume(ray_local, tmp_path):
    from pipelines.dictionary import read_dictionary
    from training.checkpoint import load_checkpoint, load_islr

    dictionaries = [write_dictionary(tmp_path / lang, lang, plan) for lang, plan in PLAN.items()]
    overrides = [f"out_dir={tmp_path / 'runs'}",
                 f"data.languages=[{{dictionary: {dictionaries[0]}, min_count: 2}}, {{dictionary: {dictionaries[1]}, min_count: 2}}]"]
    summary = run(load_config(ISLRRecipeConfig, TINY, overrides))
    run_dir = Path(summary["run_dir"])
    # min_count 2: Z (one training clip) is dropped from aaa, with its dev clip; bbb keeps both signs
    assert json.loads((run_dir / "assets" / "classes.json").read_text()) == {"aaa": ["X", "Y"], "bbb": ["P", "Q"]}
    assert summary["languages"]["aaa"] | {"dictionary": None} == {
        "dictionary": None, "classes": 2, "dropped_classes": 1, "train_clips": 10, "train_dropped": 1, "dev_clips": 3, "dev_dropped": 1}
    assert summary["languages"]["bbb"]["train_clips"] == 8 and summary["epochs_run"] == [1, 2]
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for h in history:
        assert (h["train_clips"], h["train_aaa_clips"], h["train_bbb_clips"]) == (18, 10, 8)
        assert (h["dev_aaa_clips"], h["dev_bbb_clips"]) == (3, 2) and h["step"] == 5 * h["epoch"]  # 18 clips in batches of 4
        assert h["dev_top1"] == h["dev_aaa_top1"] and h["dev_aaa_top5"] == 100.0  # 2 classes: always in the top 5
        assert np.isfinite(h["train_loss"]) and {"dev_bbb_class_top1", "dev_aaa_class_top5"} <= h.keys()
    best = history[summary["best_epoch"] - 1]
    assert best["dev_top1"] == max(h["dev_top1"] for h in history) == summary["best_dev_top1"]

    # the checkpoint: the islr family, class lists per language, and scoring dev exactly as the run did
    loaded = load_islr(run_dir)
    assert loaded.path == Path(summary["best_checkpoint"]) and loaded.classes == {"aaa": ["X", "Y"], "bbb": ["P", "Q"]}
    assert loaded.clip_frames == 16 and loaded.collate.height == 32 and not loaded.model.training
    assert type(load_checkpoint(run_dir)).__name__ == "ISLRCheckpoint"
    assert {k: tuple(v.weight.shape) for k, v in loaded.model.heads.items()} == {"aaa": (2, 64), "bbb": (2, 64)}
    rows = [r for d in dictionaries for r in read_dictionary(str(d), "dev").take_all() if r["gloss"] != "Z"]
    dev = evaluate_clips(loaded.model, rows, loaded.classes, loaded.collate, clip_frames=16, batch_size=8, device=torch.device("cpu"))
    assert dev == pytest.approx({k: v for k, v in best.items() if k.startswith("dev_")})

    # the same command with more epochs resumes after epoch 2
    again = run(load_config(ISLRRecipeConfig, TINY, [*overrides, "train.epochs=3"]))
    assert again["epochs_run"] == [3]
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
