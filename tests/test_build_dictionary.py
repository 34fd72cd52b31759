"""The isolated-sign dictionary (jobs/build_dictionary.py, pipelines/dictionary.py): alignment of shard
rows with a hand-made model (widening, x4 and frame-stride mapping, videos left out), IoU and
statistics on hand cases, and the job end to end on a toy corpus with a hand-constructed checkpoint
(clips equal to the source rows' frames, statistics, IoU, resume, refusal of a stale dictionary)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from common.config import ConfigError
from jobs.build_dictionary import DictionaryConfig, align_rows, run
from pipelines.dictionary import (
    clip_ious,
    dictionary_statistics,
    interval_iou,
    read_dictionary,
    read_dictionary_manifest,
    read_dictionary_table,
    read_shard_rows,
    read_true_signs,
)
from pipelines.video_collate import VideoCollateConfig
from pipelines.vocabulary import GlossVocabulary

LONG = " ".join(["G0", "G1", "G2"] * 3)  # 9 glosses: more than the 6-7 output steps of a 24-26 frame video


# ---- pure parts: IoU, statistics, true boundaries --------------------------------------------------------


def test_interval_iou_on_hand_cases():
    pred = [[0, 10], [5, 15], [0, 4], [3, 3]]
    true = [[0, 10], [10, 20], [2, 6], [3, 3]]
    # identical; [10,15) of [5,20) = 5/15; [2,4) of [0,6) = 2/6; both empty -> 0
    np.testing.assert_allclose(interval_iou(pred, true), [1.0, 5 / 15, 2 / 6, 0.0])
    assert interval_iou([[0, 4]], [[4, 8]])[0] == 0.0  # touching intervals do not overlap


def test_clip_ious_pair_each_clip_with_its_gloss_and_name_mismatches():
    truth = {"v": [{"gloss": "A", "start": 0, "end": 10}, {"gloss": "B", "start": 10, "end": 20}]}
    clips = [{"video": "v", "gloss": "A", "gloss_index": 0, "source_start": 2, "source_end": 10},
             {"video": "v", "gloss": "B", "gloss_index": 1, "source_start": 10, "source_end": 25}]
    ious, problems = clip_ious(clips, truth)
    assert ious == pytest.approx([8 / 10, 10 / 15]) and problems == []
    _, problems = clip_ious([{**clips[1], "gloss": "C"}, {**clips[0], "video": "w"}], truth)
    assert problems == ["v: gloss 1 is 'C', the true signs say 'B'", "w: no true boundaries"]


def test_true_signs_are_read_and_bad_lines_named(tmp_path):
    path = tmp_path / "signs.train.jsonl"
    path.write_text(json.dumps({"name": "v", "signer": "s", "signs": [{"gloss": "A", "start": 1, "end": 5, "cue": None}]}) + "\n"
                    + '{"name": "w"}\n')
    with pytest.raises(ValueError, match=r"signs.train.jsonl:2: not a sign-boundary line"):
        read_true_signs(path)
    path.write_text(path.read_text().splitlines()[0] + "\n\n")
    assert read_true_signs(path) == {"v": [{"gloss": "A", "start": 1, "end": 5}]}


def test_statistics_on_a_hand_checkable_case():
    def clip(split, video, gloss, n, conf):
        return {"split": split, "video": video, "gloss": gloss, "num_frames": n, "confidence": conf}

    clips = [clip("train", "a", "X", 4, 0.5), clip("train", "a", "Y", 8, 1.0), clip("train", "b", "X", 6, 0.75),
             clip("dev", "c", "Z", 10, 0.25)]
    errors = [{"name": "d", "split": "train", "stage": "unfittable"}, {"name": "e", "split": "train", "stage": "unknown_gloss"},
              {"name": "f", "split": "dev", "stage": "unfittable"}]
    stats = dictionary_statistics(clips, errors, {"train": 4, "dev": 2}, ious={"train": [1.0, 0.5, 0.0], "dev": [0.5]})
    assert stats["train"] == {"videos": 4, "aligned_videos": 2, "unfittable_videos": 1, "other_errors": 1, "segments": 3,
                              "mean_length": 6.0, "min_length": 4, "max_length": 8, "vocabulary": 2, "mean_confidence": 0.75,
                              "unfittable": ["d"], "iou_segments": 3, "mean_iou": 0.5}
    assert stats["dev"]["segments"] == 1 and stats["dev"]["unfittable"] == ["f"] and stats["dev"]["mean_iou"] == 0.5
    assert stats["all"]["videos"] == 6 and stats["all"]["segments"] == 4 and stats["all"]["mean_length"] == 7.0
    assert stats["all"]["vocabulary"] == 3 and stats["all"]["unfittable"] == ["d", "f"] and stats["all"]["mean_iou"] == 0.5
    assert "mean_iou" not in dictionary_statistics(clips, [], {"train": 4, "dev": 2})["all"]


# ---- alignment of shard rows with a hand-made model ----------------------------------------------------------


class PatternModel(torch.nn.Module):
    """Log-probs (B, T/4, 5) of a fixed pattern over 4 steps (blank, pad, unk, A=3, B=4): A; blank
    whose best non-blank class is A; blank whose best non-blank class is B; B."""

    PROBS = [[0.1, 0.0, 0.0, 0.8, 0.1], [0.6, 0.0, 0.0, 0.3, 0.1], [0.6, 0.0, 0.0, 0.1, 0.3], [0.1, 0.0, 0.0, 0.2, 0.7]]

    def forward(self, frames, lengths, keypoints=None):
        steps = math.ceil(frames.shape[1] / 4)
        p = torch.tensor(self.PROBS + [[0.2, 0.0, 0.0, 0.4, 0.4]] * max(0, steps - 4))[:steps].clamp(min=1e-6)
        return {"log_probs": {"rgb": p.log().expand(frames.shape[0], -1, -1)}, "lengths": torch.div(lengths, 4, rounding_mode="floor")}


def _row(name: str, gloss: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"name": name, "split": "train", "signer": "S1", "language": "xx", "gloss": gloss, "num_frames": n,
            "source_frames": 3 * n, "frame_indices": np.arange(n) * 3, "fps": 25 / 3, "height": 8, "width": 8,
            "frames": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
            "keypoints": rng.normal(size=(n, 133, 3)).astype(np.float16), "keypoint_backend": "test"}


@pytest.mark.parametrize("widen", [True, False])
def test_align_rows_cuts_widened_segments_through_both_strides_and_reports_left_out_videos(widen):
    """32 stored frames, frame_stride 2 -> 16 model frames -> 4 output steps of 4 model frames each.
    Widened: A owns steps 0-1 and B steps 2-3 -> stored frames [0, 16) and [16, 32); unwidened:
    steps 0 and 3 -> [0, 8) and [24, 32)."""
    ck = SimpleNamespace(model=PatternModel(), vocab=GlossVocabulary(["A", "B"]), frame_stride=2, uses_keypoints=False,
                         collate=VideoCollateConfig(height=8, width=8, max_frames=8))  # max_frames is lifted for alignment
    rows = [_row("good", "A B", 32, 0), _row("short", "A A B", 8, 1), _row("unknown", "A ZZ", 32, 2)]
    clips, errors = align_rows(ck, rows, head="rgb", widen=widen, device=torch.device("cpu"))
    assert [(e.name, e.stage) for e in errors] == [("unknown", "unknown_gloss"), ("short", "unfittable")]
    assert "['ZZ']" in errors[0].message
    assert errors[1].message == "3 glosses (1 adjacent repeats) need at least 4 output steps; its 8 frames give 1"
    assert [c["name"] for c in clips] == ["good#0", "good#1"] and [c["gloss"] for c in clips] == ["A", "B"]
    spans = [(c["start"], c["end"]) for c in clips]
    assert spans == ([(0, 16), (16, 32)] if widen else [(0, 8), (24, 32)])
    p = np.array(PatternModel.PROBS)
    want = [p[:2, 3].mean(), p[2:, 4].mean()] if widen else [p[0, 3], p[3, 4]]
    assert [c["confidence"] for c in clips] == pytest.approx(want, rel=1e-5)
    for c, (start, end) in zip(clips, spans):
        np.testing.assert_array_equal(c["frames"], rows[0]["frames"][start:end])
        np.testing.assert_array_equal(c["keypoints"], rows[0]["keypoints"][start:end])
        assert (c["source_start"], c["source_end"]) == (3 * start, 3 * end)  # through frame_indices; the end: source_frames
        assert c["num_frames"] == end - start and c["video"] == "good" and c["language"] == "xx"


# ---- the job end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(ray_local, tmp_path_factory):
    """A toy corpus (24-26 frame mp4s, glosses G0-G2, two per video; train_001 has 9 glosses, which
    cannot fit) with hand-written true boundaries, preprocessed to shards (2 videos per block)."""
    from video_fixtures import write_corpus

    from jobs.preprocess import PreprocessConfig, run as preprocess

    root = tmp_path_factory.mktemp("dict_corpus")
    write_corpus(root, "aaa", {"train": 5, "dev": 2}, num_frames=24)
    for split in ("train", "dev"):
        csv = root / "aaa" / f"aaa.{split}.corpus.csv"
        lines = [("|".join(p[:5] + [LONG] + p[6:]) if (p := line.split("|"))[0] == "train_001" else line)
                 for line in csv.read_text().splitlines()]
        csv.write_text("\n".join(lines) + "\n")
        signs = []
        for p in (line.split("|") for line in lines[1:]):
            glosses, n = p[5].split(), int(p[3]) + 1
            cuts = [round(k * n / len(glosses)) for k in range(len(glosses) + 1)]
            signs.append({"name": p[0], "signer": p[4], "signs": [{"gloss": g, "start": a, "end": b, "cue": None}
                                                                  for g, a, b in zip(glosses, cuts, cuts[1:])]})
        (root / "aaa" / f"signs.{split}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in signs))
    out = tmp_path_factory.mktemp("dict_shards")
    preprocess(PreprocessConfig.model_validate({
        "name": "syn_{language}", "out_dir": str(out),
        "corpus": {"name": "synthetic", "format": "synthetic", "language": "aaa", "root": str(root)},
        "splits": ["train", "dev"], "frames": {"resize": "none"},
        "keypoints": {"backend": "groundtruth", "dtype": "float16"}, "shards": {"videos_per_block": 2},
        "resources": {"decode_cpus": 0.5, "encode_cpus": 0.5, "keypoint_cpus": 0.5, "keypoint_actors": 1, "videos_per_batch": 2},
    }))
    return root, out


def _checkpoint(path: Path, seed: int) -> Path:
    """A hand-constructed Sign2Gloss checkpoint (a tiny untrained SingleStream model, G0-G2)."""
    from models.two_stream import TwoStreamConfig, TwoStreamSLR
    from training.checkpoint import save_sign2gloss

    torch.manual_seed(seed)
    model = TwoStreamSLR(TwoStreamConfig(num_classes=6, streams=("rgb",), width=0.0625, rgb_size=32, pyramid=False,
                                         head_hidden=16, head_ff=32, dropout=0.0))
    save_sign2gloss(path / "model", model=model, vocab=GlossVocabulary(["G0", "G1", "G2"]),
                    collate=VideoCollateConfig(height=32, width=32), keypoint_backend="groundtruth")
    (path / "metrics.json").write_text(json.dumps({"epoch": 1, "dev_head": "rgb"}))
    return path


def _config(shards: Path, out: Path, checkpoint: Path, **over) -> DictionaryConfig:
    return DictionaryConfig.model_validate({
        "out_dir": str(out), "shards": str(shards), "dataset": "syn_aaa", "checkpoint": str(checkpoint),
        "splits": ["train", "dev"], "resources": {"cpus_per_actor": 0.5, "batch_videos": 3}, **over})


def test_dictionary_end_to_end_resume_and_refusal(corpus, tmp_path):
    root, shards = corpus
    ckpt = _checkpoint(tmp_path / "ckpt", seed=0)
    cfg = _config(shards, tmp_path / "dict", ckpt)
    summary = run(cfg)
    where = Path(summary["dictionary"])
    assert where == tmp_path / "dict" / "syn_aaa" and summary["blocks_aligned"] == 4 and summary["head"] == "rgb"
    manifest = read_dictionary_manifest(str(where))
    assert manifest["language"] == "aaa" and manifest["key"] == summary["key"]

    # every aligned video: one clip per gloss, in order, inside the video, not overlapping, and the
    # clip's frames and keypoints are the source row's for its span, byte for byte
    sources = {r["name"]: r for split in ("train", "dev") for p in sorted((shards / "syn_aaa" / split).glob("*.parquet"))
               for r in read_shard_rows(str(p))}
    clips = sorted(read_dictionary(str(where), ["train", "dev"]).take_all(), key=lambda c: c["name"])
    by_video: dict[str, list[dict]] = {}
    for c in clips:
        by_video.setdefault(c["video"], []).append(c)
    assert sorted(by_video) == sorted(n for n in sources if n != "train_001")
    for video, cs in by_video.items():
        src = sources[video]
        assert [c["gloss"] for c in cs] == src["gloss"].split() and [c["gloss_index"] for c in cs] == [0, 1]
        assert all(0 <= c["start"] < c["end"] <= src["num_frames"] for c in cs) and cs[0]["end"] <= cs[1]["start"]
        for c in cs:
            assert [bytes(b) for b in c["frames"]] == src["frames"][c["start"] : c["end"]]
            np.testing.assert_array_equal(c["keypoints"], src["keypoints"][c["start"] : c["end"]])
            assert (c["source_start"], c["source_end"], c["num_frames"]) == (c["start"], c["end"], c["end"] - c["start"])
            assert 0 < c["confidence"] <= 1 and c["split"] == src["split"] and c["language"] == "aaa"

    # the unfittable video is reported, never silently dropped
    errors = pq.read_table(where / "errors.parquet").to_pylist()
    assert [(e["name"], e["stage"]) for e in errors] == [("train_001", "unfittable")]
    stats = json.loads((where / "statistics.json").read_text())
    assert stats == summary["statistics"] and stats["truth"] == str(root / "aaa")
    train = stats["splits"]["train"]
    assert (train["videos"], train["aligned_videos"], train["unfittable_videos"], train["segments"]) == (5, 4, 1, 8)
    assert train["unfittable"] == ["train_001"] and stats["splits"]["all"]["segments"] == 12
    assert train["mean_length"] == pytest.approx(np.mean([c["num_frames"] for c in clips if c["split"] == "train"]))
    # IoU against the hand-written boundaries, recomputed here
    for split in ("train", "dev"):
        truth = read_true_signs(root / "aaa" / f"signs.{split}.jsonl")
        want = [float(interval_iou([[c["source_start"], c["source_end"]]],
                                   [[truth[c["video"]][c["gloss_index"]][k] for k in ("start", "end")]])[0])
                for c in clips if c["split"] == split]
        assert stats["splits"][split]["mean_iou"] == pytest.approx(np.mean(want))
    small = read_dictionary_table(str(where), "dev").to_pylist()
    assert sorted(c["name"] for c in small) == ["dev_005#0", "dev_005#1", "dev_006#0", "dev_006#1"]

    # a re-run aligns nothing; with one block's receipt gone it aligns that block alone, to the same bytes
    files = {p: p.read_bytes() for p in sorted(where.glob("*/*.parquet"))}
    again = run(cfg)
    assert again["blocks_aligned"] == 0 and again["blocks_reused"] == 4 and again["statistics"] == stats
    (where / "_progress" / "train-b00001.json").unlink()
    assert run(cfg)["blocks_aligned"] == 1
    assert {p: p.read_bytes() for p in sorted(where.glob("*/*.parquet"))} == files

    # another checkpoint over the same folder: refused, then rebuilt with overwrite
    other = _checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(ConfigError, match="another checkpoint, other shards or other settings"):
        run(_config(shards, tmp_path / "dict", other))
    rebuilt = run(_config(shards, tmp_path / "dict", other, overwrite=True))
    assert rebuilt["key"] != summary["key"] and rebuilt["blocks_aligned"] == 4


def test_demo_config_validates():
    from common.config import load_config

    cfg = load_config(DictionaryConfig, Path(__file__).resolve().parents[1] / "configs/dictionary/demo.yaml")
    assert cfg.output_uri == "outputs/demo/dictionary/synthetic-sgsl-a" and cfg.splits == ["train", "dev"] and cfg.widen

