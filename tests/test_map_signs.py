"""Cross-lingual sign mapping (jobs/map_signs.py, pipelines/sign_mapping.py, models.islr.head_similarity):
the three strategies and the threshold on hand-computed cases, relabelling and the accuracy against
true pairs, and the job end to end on two hand-written dictionaries with an ISLR checkpoint whose
primary head is set so that black clips are sign X and white clips sign Y (the expected mapping is
known; the confidences match the model run in the test), with its errors."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from common.config import ConfigError, load_config
from jobs.map_signs import MappingConfig, run
from models.islr import ISLRConfig, ISLRModel, head_similarity
from pipelines.auxiliary_labels import read_relabel
from pipelines.sign_mapping import SignMapping, class_scores, instance_scores, mapping_accuracy, mapping_table, relabel, strip_frames

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/mapping/tiny.yaml"
PRIMARY = ["X", "Y", "Z"]


# ---- the strategies and the threshold on hand cases -----------------------------------------------------------


def test_class_level_averages_each_signs_softmax_then_takes_the_argmax():
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2],  # B
                      [0.1, 0.3, 0.6], [0.2, 0.2, 0.6],  # A
                      [0.1, 0.8, 0.1]])  # C
    signs, scores, clips = class_scores(probs, ["B", "B", "A", "A", "C"])
    assert signs == ["A", "B", "C"] and clips.tolist() == [2, 2, 1]
    np.testing.assert_allclose(scores, [[0.15, 0.25, 0.6], [0.7, 0.175, 0.125], [0.1, 0.8, 0.1]])
    table = mapping_table(signs, scores, clips, PRIMARY, threshold=0.6, language="bbb")
    assert table == [SignMapping("A", "Z", 0.6, 2, True, "Z"),  # 0.6 >= 0.6: mapped
                     SignMapping("B", "X", pytest.approx(0.7), 2, True, "X"),
                     SignMapping("C", "Y", 0.8, 1, True, "Y")]
    table = mapping_table(signs, scores, clips, PRIMARY, threshold=0.75, language="bbb")
    assert [(m.mapped, m.label) for m in table] == [(False, "bbb:A"), (False, "bbb:B"), (True, "Y")]
    assert table[0].primary_gloss == "Z"  # the best candidate is kept in the table, mapped or not
    with pytest.raises(ValueError, match=r"probs \(5, 3\) and 4 glosses"):
        class_scores(probs, ["A"] * 4)


def test_instance_level_is_a_majority_vote_of_the_clips_with_the_winning_share_as_confidence():
    probs = np.array([[0.1, 0.3, 0.6], [0.2, 0.1, 0.7], [0.3, 0.6, 0.1],  # A: votes Z, Z, Y
                      [0.4, 0.4, 0.2], [0.1, 0.5, 0.4],  # D: votes X (tie -> first class), Y
                      [0.35, 0.33, 0.32]])  # E: one clip, X
    signs, scores, clips = instance_scores(probs, ["A", "A", "A", "D", "D", "E"])
    assert signs == ["A", "D", "E"] and clips.tolist() == [3, 2, 1]
    np.testing.assert_allclose(scores, [[0, 1 / 3, 2 / 3], [0.5, 0.5, 0], [1, 0, 0]])
    table = mapping_table(signs, scores, clips, PRIMARY, threshold=0.5, language="bbb")
    assert [(m.aux_gloss, m.primary_gloss, m.mapped) for m in table] == [("A", "Z", True), ("D", "X", True), ("E", "X", True)]
    assert [m.confidence for m in table] == pytest.approx([2 / 3, 0.5, 1.0])
    # class level on the same clips: E's confidence is its clip's probability, not the vote share
    assert mapping_table(*class_scores(probs[5:], ["E"]), PRIMARY, threshold=0.5, language="bbb")[0].confidence == 0.35


def test_weight_level_is_the_row_softmax_of_the_heads_weight_product_without_biases():
    model = ISLRModel(ISLRConfig(num_classes={"aaa": 2, "bbb": 3}, width=0.0625, rgb_size=32, dropout=0.0))
    dim = model.heads["aaa"].in_features
    w_primary, w_aux = torch.zeros(2, dim), torch.zeros(3, dim)
    w_primary[0, 0] = w_primary[1, 1] = 1.0
    w_aux[0, 0] = 2.0  # products [2, 0]
    w_aux[1, 1] = math.log(3)  # [0, ln 3] -> softmax [1/4, 3/4]
    w_aux[2, :2] = 1.0  # [1, 1]: a tie
    with torch.no_grad():
        model.heads["aaa"].weight.copy_(w_primary)
        model.heads["bbb"].weight.copy_(w_aux)
        model.heads["aaa"].bias.fill_(5.0)  # biases play no part
        model.heads["bbb"].bias.fill_(-3.0)
        scores = head_similarity(model, "bbb", "aaa")
    e2 = math.exp(2)
    np.testing.assert_allclose(scores.numpy(), [[e2 / (e2 + 1), 1 / (e2 + 1)], [0.25, 0.75], [0.5, 0.5]], rtol=1e-6)
    table = mapping_table(["P", "Q", "R"], scores.numpy(), [4, 0, 1], ["X", "Y"], threshold=0.5, language="bbb")
    assert [(m.primary_gloss, m.mapped) for m in table] == [("X", True), ("Y", True), ("X", True)]  # tie -> first
    with pytest.raises(KeyError, match=r"no head for language 'ccc' \(heads: \['aaa', 'bbb'\]\)"):
        head_similarity(model, "ccc", "aaa")


def test_threshold_edges_zero_maps_every_scored_sign_one_maps_nothing():
    scores = np.array([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]])
    every = mapping_table(["A", "B", "C"], scores, [1, 1, 1], ["X", "Y"], threshold=0.0, language="bbb",
                          other_signs={"D": 2, "A": 7})
    assert [(m.aux_gloss, m.mapped, m.label, m.clips) for m in every] == [
        ("A", True, "X", 1), ("B", True, "Y", 1), ("C", True, "X", 1), ("D", False, "bbb:D", 2)]  # D: no scores
    assert every[3].primary_gloss is None and every[3].confidence == 0.0
    none = mapping_table(["A", "B", "C"], scores, [1, 1, 1], ["X", "Y"], threshold=1.0, language="bbb")
    assert [m.label for m in none] == ["bbb:A", "bbb:B", "bbb:C"]  # even A, of confidence exactly 1
    assert none[0].confidence == 1.0 and none[0].primary_gloss == "X"
    assert [m.mapped for m in mapping_table(["A", "B"], scores[:2], [1, 1], ["X", "Y"], threshold=0.7, language="b")] == [True, True]
    for bad in (-0.1, 1.01):
        with pytest.raises(ValueError, match=rf"threshold {bad}: must be in \[0, 1\]"):
            mapping_table(["A"], scores[:1], [1], ["X", "Y"], threshold=bad, language="bbb")


def test_relabelling_and_accuracy_against_true_pairs():
    table = [SignMapping("P", "X", 0.9, 3, True, "X"), SignMapping("Q", "X", 0.8, 2, True, "X"),
             SignMapping("R", "Y", 0.4, 2, False, "bbb:R"), SignMapping("S", "Y", 0.95, 2, True, "Y"),
             SignMapping("T", None, 0.0, 0, False, "bbb:T")]
    assert relabel("P R S U P", table, "bbb") == ["X", "bbb:R", "Y", "bbb:U", "X"]  # U: not in the table
    acc = mapping_accuracy(table, {"P": "X", "Q": "Y", "R": "Y", "V": "Z"})
    # shared P, Q, R, V: best right P, R (2/4); mapped right: P (1/4); V has no row
    # unshared S, T: S mapped (1/2); mapped P, Q, S: only P to its true sign (1/3)
    assert acc.pop("mapped_precision") == pytest.approx(100 / 3)
    assert acc == {"shared_signs": 4, "shared_correct": 2, "shared_accuracy": 50.0, "shared_without_scores": ["V"],
                   "shared_mapped_correct": 25.0, "unshared_signs": 2, "unshared_mapped": 1, "unshared_mapped_share": 50.0,
                   "mapped_signs": 3, "wrong": {"Q": "X", "V": None}}
    none = mapping_accuracy([SignMapping("P", "X", 1.0, 1, False, "bbb:P")], {})
    assert none["shared_accuracy"] is None and none["mapped_precision"] is None and none["unshared_mapped_share"] == 0.0


def test_figure_strips_show_evenly_spaced_frames_with_grey_gaps():
    frames = np.zeros((5, 4, 6, 3), np.uint8)
    frames[..., 0] = np.arange(5)[:, None, None]  # frame k has red level k
    strip = strip_frames(frames, 3)  # frames 0, 2, 4
    assert strip.shape == (4, 3 * 6 + 2 * 2, 3)
    assert strip[0, :, 0].tolist() == [0] * 6 + [128] * 2 + [2] * 6 + [128] * 2 + [4] * 6


def test_shipped_configs_validate_and_bad_values_are_named():
    demo = load_config(MappingConfig, REPO / "configs/mapping/demo.yaml")
    assert demo.strategy == "class" and demo.truth == "outputs/demo/corpus" and demo.checkpoint == "outputs/demo/islr/islr_demo"
    assert [Path(p).name for p in (demo.primary_dictionary, demo.auxiliary_dictionary)] == ["synthetic-sgsl-a", "synthetic-sgsl-b"]
    load_config(MappingConfig, TINY)
    with pytest.raises(ConfigError, match="threshold"):
        load_config(MappingConfig, TINY, ["threshold=1.5"])
    with pytest.raises(ConfigError, match="strategy"):
        load_config(MappingConfig, TINY, ["strategy=pairs"])


# ---- the job end to end ------------------------------------------------------------------------------------------


SIZE = 16
AUX = {"P": ["black"] * 3, "Q": ["white"] * 2, "R": ["black", "white"], "S": ["white"] * 2}
SENTENCES = [("s0", "P Q"), ("s1", "R S P"), ("s2", "T Q")]  # T: no clips in the dictionary


def _clip_rows(language: str, plan: dict[str, list[str]]) -> list[dict]:
    """One clip per source video: 12 uniform black or white JPEG frames."""
    from pipelines.dictionary import cut_clips

    rows, k = [], 0
    for gloss, colours in plan.items():
        for colour in colours:
            frame = np.full((SIZE, SIZE, 3), 0 if colour == "black" else 255, np.uint8)
            row = {"name": f"{language}_{k}", "split": "train", "signer": "S", "language": language, "gloss": gloss,
                   "num_frames": 12, "fps": 25.0, "height": SIZE, "width": SIZE,
                   "frames": [cv2.imencode(".jpg", frame)[1].tobytes()] * 12, "keypoints": None, "keypoint_backend": "none"}
            rows += cut_clips(row, [gloss], np.array([[0, 12]]), [0.5 + 0.01 * k])
            k += 1
    return rows


def _write_dictionary(root: Path, language: str, clips: list[dict], source: str | None = None) -> str:
    from pipelines.dictionary import FORMAT, VERSION, dictionary_schema
    from pipelines.shards import MANIFEST, DatasetDir, write_block

    directory = DatasetDir(str(root))
    receipt = write_block(directory, "train", 0, clips, [], videos=len(clips), config_hash="k",
                          schema=dictionary_schema("jpeg", "float16"), max_shard_bytes=2**30)
    directory.write_json(MANIFEST, {"format": FORMAT, "version": VERSION, "language": language, "source": source,
                                    "splits": {"train": {"shards": [asdict(f) for f in receipt.files]}}})
    return str(root)


def _write_sentences(root: Path) -> str:
    """Source shards as far as the mapping reads them: a manifest and name / split / gloss."""
    from pipelines.shards import SCHEMA_VERSION

    (root / "train").mkdir(parents=True)
    pq.write_table(pa.table({"name": [n for n, _ in SENTENCES], "split": ["train"] * 3, "gloss": [g for _, g in SENTENCES]}),
                   root / "train" / "part.parquet")
    (root / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION,
                                                    "splits": {"train": {"shards": [{"path": "train/part.parquet"}]}}}))
    return str(root)


def _clip_probs(model: ISLRModel, clips: list[dict], collate) -> torch.Tensor:
    """The primary head's softmax (N, 2) for clips, collated as the job does."""
    from pipelines.islr_batches import ISLRCollate

    batch = ISLRCollate(collate, train=False, classes={"bbb": sorted(AUX)}, clip_frames=16)(clips)
    with torch.no_grad():
        return torch.softmax(model(batch["frames"])["aaa"], dim=-1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Dictionaries of aaa (X black, Y white) and bbb (AUX), bbb's sentences, the true pairs, and an
    ISLR checkpoint whose aaa head tells black (X) from white (Y) clips with logit margin 10."""
    from pipelines.islr_batches import ISLRCollate
    from pipelines.video_collate import VideoCollateConfig
    from training.checkpoint import save_islr

    root = tmp_path_factory.mktemp("mapping")
    aux_clips = _clip_rows("bbb", AUX)
    shards = _write_sentences(root / "shards_bbb")
    aux = _write_dictionary(root / "dict_bbb", "bbb", aux_clips, source=shards)
    primary = _write_dictionary(root / "dict_aaa", "aaa", _clip_rows("aaa", {"X": ["black"] * 2, "Y": ["white"] * 2}))
    (root / "corpus").mkdir()
    (root / "corpus" / "mapping.json").write_text(json.dumps({"primary": "aaa", "auxiliary": "bbb", "pairs": {"P": "X", "Q": "X"}}))

    torch.manual_seed(0)
    collate = VideoCollateConfig(height=32, width=32)
    model = ISLRModel(ISLRConfig(num_classes={"aaa": 2, "bbb": 4}, width=0.0625, rgb_size=32, dropout=0.0)).eval()
    black, white = (next(c for c in aux_clips if c["gloss"] == g) for g in ("P", "Q"))
    with torch.no_grad():
        f = model.features(ISLRCollate(collate, train=False, classes={"bbb": ["P", "Q"]}, clip_frames=16)([black, white])["frames"])
        d, mid = f[0] - f[1], (f[0] + f[1]) / 2
        scale = 10.0 / float(d @ d)  # logits (5, -5) on black clips, (-5, 5) on white ones
        model.heads["aaa"].weight.copy_(torch.stack([d, -d]) * scale)
        model.heads["aaa"].bias.copy_(torch.stack([-(d @ mid), d @ mid]) * scale)
    ck = root / "islr" / "checkpoint_000000"
    save_islr(ck / "model", model=model, classes={"aaa": ["X", "Y"], "bbb": sorted(AUX)}, collate=collate, clip_frames=16)
    return {"root": root, "aux": aux, "primary": primary, "checkpoint": str(ck), "model": model, "aux_clips": aux_clips,
            "collate": collate}


def _overrides(world: dict, *extra: str) -> list[str]:
    root = world["root"]
    return [f"out_dir={root / 'out'}", f"checkpoint={world['checkpoint']}", f"primary_dictionary={world['primary']}",
            f"auxiliary_dictionary={world['aux']}", f"truth={root / 'corpus'}", "figure_pairs=3", *extra]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_class_level_mapping_end_to_end(ray_local, world):
    summary = run(load_config(MappingConfig, TINY, _overrides(world, "name=cls", "threshold=0.7", "sweep_thresholds=[0.0,1.0]")))
    out = Path(summary["out_dir"])
    probs = _clip_probs(world["model"], world["aux_clips"], world["collate"]).numpy()
    assert probs[0, 0] == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-4)  # the head works as built: black -> X
    _, want, _ = class_scores(probs, [c["gloss"] for c in world["aux_clips"]])  # signs P, Q, R, S
    rows = _csv(out / "mapping.csv")
    assert [(r["aux_gloss"], r["primary_gloss"], r["mapped"], r["clips"], r["label"]) for r in rows] == [
        ("P", "X", "True", "3", "X"), ("Q", "Y", "True", "2", "Y"), ("R", rows[2]["primary_gloss"], "False", "2", "bbb:R"),
        ("S", "Y", "True", "2", "Y"), ("T", "", "False", "0", "bbb:T")]
    assert [float(r["confidence"]) for r in rows[:4]] == pytest.approx(want.max(axis=1).tolist(), abs=2e-6)
    assert float(rows[2]["confidence"]) == pytest.approx(0.5, abs=1e-3)  # one black and one white clip
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["pairs"] == {"P": "X", "Q": "Y", "S": "Y"} and mapping["labels"]["T"] == "bbb:T"
    assert (mapping["primary"], mapping["auxiliary"], mapping["strategy"], mapping["threshold"]) == ("aaa", "bbb", "class", 0.7)
    lines = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert lines == [{"name": "s0", "split": "train", "gloss": "X Y", "source_gloss": "P Q"},
                     {"name": "s1", "split": "train", "gloss": "bbb:R Y X", "source_gloss": "R S P"},
                     {"name": "s2", "split": "train", "gloss": "bbb:T Y", "source_gloss": "T Q"}]
    # the recognition recipe's relabel files (pipelines/auxiliary_labels.py reads them): at the
    # threshold, at 0 (R too: its best primary sign) and at 1 (nothing mapped)
    want_relabel = {"s0": ["X", "Y"], "s1": ["bbb:R", "Y", "X"], "s2": ["bbb:T", "Y"]}
    assert read_relabel(out / "relabelled.jsonl") == want_relabel
    assert read_relabel(out / "relabelled_t0.00.jsonl") == {**want_relabel, "s1": [rows[2]["primary_gloss"], "Y", "X"]}
    assert read_relabel(out / "relabelled_t1.00.jsonl") == {"s0": ["bbb:P", "bbb:Q"], "s1": ["bbb:R", "bbb:S", "bbb:P"],
                                                           "s2": ["bbb:T", "bbb:Q"]}
    # true pairs P -> X, Q -> X: P right, Q wrong; unshared R, S, T: S mapped
    acc = summary["accuracy"]
    assert (acc["shared_accuracy"], acc["unshared_mapped"], acc["unshared_signs"], acc["wrong"]) == (50.0, 1, 3, {"Q": "Y"})
    assert summary["clips_scored"] == 9 and summary["mapped_signs"] == 3
    assert (summary["sentences"], summary["gloss_tokens"], summary["tokens_mapped"]) == (3, 7, 5)
    assert json.loads((out / "summary.json").read_text()) == summary
    image = cv2.imread(str(out / "pairs.png"))
    assert image is not None and image.shape[0] > 300  # three pairs, one row each


def test_instance_level_at_threshold_one_is_the_multi_task_baseline(ray_local, world):
    summary = run(load_config(MappingConfig, TINY, _overrides(world, "name=inst", "strategy=instance", "threshold=1.0")))
    out = Path(summary["out_dir"])
    rows = {r["aux_gloss"]: r for r in _csv(out / "mapping.csv")}
    assert {g: (r["primary_gloss"], float(r["confidence"])) for g, r in rows.items() if g != "R"} == {
        "P": ("X", 1.0), "Q": ("Y", 1.0), "S": ("Y", 1.0), "T": ("", 0.0)}  # every clip agrees, yet nothing is mapped
    assert float(rows["R"]["confidence"]) == 0.5 and all(r["mapped"] == "False" for r in rows.values())
    lines = [json.loads(line)["gloss"] for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert lines == ["bbb:P bbb:Q", "bbb:R bbb:S bbb:P", "bbb:T bbb:Q"]
    assert summary["mapped_signs"] == 0 and summary["tokens_mapped"] == 0
    assert summary["accuracy"]["shared_accuracy"] == 50.0 and summary["accuracy"]["unshared_mapped_share"] == 0.0


def test_weight_level_reads_only_the_heads(world):
    summary = run(load_config(MappingConfig, TINY, _overrides(world, "name=w", "strategy=weights", "threshold=0.0")))
    with torch.no_grad():
        want = head_similarity(world["model"], "bbb", "aaa").numpy()
    rows = _csv(Path(summary["out_dir"]) / "mapping.csv")
    assert [r["aux_gloss"] for r in rows] == ["P", "Q", "R", "S", "T"] and summary["clips_scored"] == 0
    assert [float(r["confidence"]) for r in rows[:4]] == pytest.approx(want.max(axis=1).tolist(), abs=2e-6)
    assert [r["primary_gloss"] for r in rows[:4]] == [["X", "Y"][i] for i in want.argmax(axis=1)]
    assert [r["clips"] for r in rows] == ["3", "2", "2", "2", "0"] and rows[4]["label"] == "bbb:T"


def test_errors_name_what_is_wrong(world, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/manifest.json: not found"):
        run(load_config(MappingConfig, TINY, _overrides(world, "name=e", f"auxiliary_dictionary={tmp_path / 'nowhere'}")))
    from pipelines.video_collate import VideoCollateConfig
    from training.checkpoint import save_islr

    other = ISLRModel(ISLRConfig(num_classes={"aaa": 2, "ccc": 1}, width=0.0625, rgb_size=32))
    save_islr(tmp_path / "ck" / "model", model=other, classes={"aaa": ["X", "Y"], "ccc": ["K"]},
              collate=VideoCollateConfig(height=32, width=32), clip_frames=16)
    with pytest.raises(ConfigError, match=r"no head for the auxiliary language 'bbb' .*\(heads: \['aaa', 'ccc'\]\)"):
        run(load_config(MappingConfig, TINY, _overrides(world, "name=e", f"checkpoint={tmp_path / 'ck'}")))
    with pytest.raises(ConfigError, match=r"threshold: .*less than or equal to 1"):
        load_config(MappingConfig, TINY, _overrides(world, "threshold=1.2"))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "mapping.json").write_text(json.dumps({"primary": "bbb", "auxiliary": "aaa", "pairs": {}}))
    with pytest.raises(ValueError, match=r"mapping.json: maps 'aaa' -> 'bbb', this mapping is 'bbb' -> 'aaa'"):
        run(load_config(MappingConfig, TINY, _overrides(world, "name=e", "strategy=weights", f"truth={tmp_path / 'corpus'}")))
