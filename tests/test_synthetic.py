"""The synthetic signing corpus: layout, videos vs keypoints, determinism, languages, config, overwrite."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.config import ConfigError, load_config
from jobs.synthesize import PARTIAL, SynthesisError, SynthesizeConfig, content_hash, main, plan_corpus, synthesize
from pipelines.records import SPLITS
from pipelines.synthetic.generate import CSV_COLUMNS, RecordingConditions, RenderSettings, render_video
from pipelines.synthetic.language import CONCEPTS, LanguageSpec, build_languages, sample_sentence
from pipelines.synthetic.motion import INTENSE, SPACE_CENTRE, Articulation, MotionParams, sentence_poses
from pipelines.synthetic.primitives import distinct

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "synthesize" / "tiny.yaml"
# Even smaller than tiny, for the tests that generate several corpora.
MINI = ["width=48", "height=48", "primary.splits.train=2", "primary.splits.dev=1", "primary.splits.test=1",
        "auxiliary.splits.train=1", "auxiliary.splits.dev=1", "auxiliary.splits.test=1", "contact_sheet_videos=1"]  # fmt: skip


def tiny_config(out_dir: Path, *overrides: str) -> SynthesizeConfig:
    return load_config(SynthesizeConfig, TINY, [f"out_dir={out_dir}", *overrides])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The tiny corpus, generated once through the command-line entry point."""
    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    assert main(["--config", str(TINY), f"out_dir={out}", "write_frame_folders=true"]) == 0
    return out


@pytest.fixture(scope="module")
def manifest(corpus) -> dict:
    return json.loads((corpus / "synthetic.json").read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="|")
        assert tuple(reader.fieldnames) == CSV_COLUMNS == ("name", "video", "start", "end", "speaker", "orth", "translation")
        return list(reader)


def rows(corpus: Path, manifest: dict):
    for code in manifest["languages"]:
        for split in SPLITS:
            for row in read_csv(corpus / code / f"{code}.{split}.corpus.csv"):
                yield code, split, row


def test_layout_manifest_and_csv(corpus, manifest):
    assert {p.name for p in corpus.iterdir()} == {"synthetic.json", "mapping.json", "contact_sheet.png", "sgsl-a", "sgsl-b"}
    assert manifest["schema_version"] == 1 and manifest["fps"] == 25
    assert manifest["frame_size"] == {"width": 64, "height": 64}
    assert manifest["config"]["primary"]["vocab_size"] == 8
    names = set()
    for code, lang in manifest["languages"].items():
        assert len(lang["glosses"]) == 8 and all(g == g.upper() for g in lang["glosses"])
        for split in SPLITS:
            table = read_csv(corpus / code / f"{code}.{split}.corpus.csv")
            assert len(table) == lang["splits"][split] == manifest["counts"]["languages"][code][split]["videos"]
            assert sorted({r["speaker"] for r in table}) == lang["split_signers"][split]  # the manifest names each split's signers
            signs = [json.loads(line) for line in (corpus / code / f"signs.{split}.jsonl").read_text().splitlines()]
            assert [s["name"] for s in signs] == [r["name"] for r in table]
            for row, sign in zip(table, signs):
                assert row["name"].startswith(code) and row["video"] == f"videos/{row['name']}.mp4"
                assert row["start"] == "0" and row["speaker"] == sign["signer"] and row["speaker"] in lang["signers"]
                assert row["orth"].split() == [s["gloss"] for s in sign["signs"]]
                assert set(row["orth"].split()) <= set(lang["glosses"])
                assert row["translation"] == row["translation"].lower() and row["translation"].endswith(" .")
                spans = [(s["start"], s["end"]) for s in sign["signs"]]
                assert all(0 < a < b <= c < d for (a, b), (c, d) in zip(spans, spans[1:]))
                assert spans[-1][1] < int(row["end"]) + 1
                names.add(row["name"])
    assert len(names) == sum(sum(lang["splits"].values()) for lang in manifest["languages"].values())
    sheet = cv2.imread(str(corpus / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 64 and sheet.shape[1] > 64


def test_video_frames_match_csv_and_keypoints(corpus, manifest):
    for code, _, row in rows(corpus, manifest):
        num_frames = int(row["end"]) - int(row["start"]) + 1
        capture = cv2.VideoCapture(str(corpus / code / row["video"]))
        decoded = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (64, 64, 3)
            decoded += 1
        capture.release()
        keypoints = np.load(corpus / code / "keypoints" / f"{row['name']}.npy")
        assert decoded == num_frames == len(keypoints)
        assert keypoints.dtype == np.float32 and keypoints.shape == (num_frames, 133, 3)


def test_keypoints_inside_frame_and_on_the_drawn_signer(corpus, manifest):
    checked = 0
    for code, _, row in rows(corpus, manifest):
        kp = np.load(corpus / code / "keypoints" / f"{row['name']}.npy")
        score, xy = kp[..., 2], kp[..., :2]
        visible = score > 0
        assert set(np.unique(score)) <= {0.0, 1.0}
        assert (xy[visible] >= 0).all() and (xy[visible][:, 0] <= 63).all() and (xy[visible][:, 1] <= 63).all()
        assert (xy[~visible] == 0).all()
        assert not visible[:, 11:23].any()  # hips, legs, feet: not part of the signer
        assert visible[:, 0:11].all() and visible[:, 23:133].mean() > 0.99  # upper body, face, hands
        assert (xy[:, 5, 0] > xy[:, 6, 0]).all()  # COCO left shoulder is on the image right (signer faces us)
        # The right wrist keypoint lies on the rendered hand: skin-coloured (skin or its darker
        # outline shade), not background. Exact on every lossless PNG frame; on the decoded mp4
        # (lossy at 64 px, and the encoder bundled with OpenCV changes between releases) on
        # nearly every frame.
        signer = manifest["languages"][code]["signers"][row["speaker"]]
        skin, background = np.array(signer["skin"][::-1], float), np.array(signer["background"][::-1], float)
        hand_shades = np.linspace(0.6, 1.0, 9)[:, None] * skin

        def on_hand(frame: np.ndarray, t: int) -> bool:
            x, y = np.round(xy[t, 10]).astype(int)
            pixel = np.median(frame[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].reshape(-1, 3), axis=0)
            return np.linalg.norm(pixel - hand_shades, axis=1).min() < np.linalg.norm(pixel - background)

        folder = corpus / code / "frames" / row["name"] / "1"
        for t in range(len(kp)):
            assert on_hand(cv2.imread(str(folder / f"images{t + 1:04d}.png")), t), (row["name"], t)
        capture = cv2.VideoCapture(str(corpus / code / row["video"]))
        decoded_on_hand = []
        for t in range(len(kp)):
            ok, frame = capture.read()
            assert ok
            decoded_on_hand.append(on_hand(frame, t))
        assert np.mean(decoded_on_hand) >= 0.95, (row["name"], np.flatnonzero(~np.array(decoded_on_hand)))
        checked += len(kp)
    assert checked > 500


def test_rendered_wrist_is_skin_and_hand_root_is_body_wrist(tmp_path):
    """Noise-free: the hands' root keypoints are the body wrists and sit on exactly skin pixels."""
    config = tiny_config(tmp_path)
    plan = plan_corpus(config)
    settings = RenderSettings(96, 96, 25, MotionParams(), keypoint_noise_px=0.0, write_frame_folders=False)
    for spec in plan.videos[:3]:
        frames, kp, _ = render_video(spec, settings)
        np.testing.assert_array_equal(kp[:, 112, :2], kp[:, 10, :2])  # right hand wrist == body right wrist
        np.testing.assert_array_equal(kp[:, 91, :2], kp[:, 9, :2])
        skin = np.array(spec.signer.skin[::-1])
        for t in range(len(frames)):
            x, y = np.round(kp[t, 10, :2]).astype(int)
            assert np.abs(frames[t, y, x].astype(int) - skin).max() <= 12, (spec.name, t)


def test_intensity_cue_is_in_the_face_and_the_text_but_not_the_glosses(corpus, manifest):
    intense_gaps, plain_gaps, cued = [], [], 0
    for code, split, row in rows(corpus, manifest):
        lexicon = manifest["languages"][code]["spoken_language"]
        signs = {json.loads(line)["name"]: json.loads(line) for line in (corpus / code / f"signs.{split}.jsonl").read_text().splitlines()}
        kp = np.load(corpus / code / "keypoints" / f"{row['name']}.npy")
        # Inner lower lip minus inner upper lip (pixels), averaged over 3 lip pairs: robust to the noise.
        mouth_gap = (kp[:, 23 + 65 : 23 + 68, 1] - kp[:, 23 + 61 : 23 + 64, 1][:, ::-1]).mean(1)
        for sign in signs[row["name"]]["signs"]:
            assert sign["cue"] in (None, INTENSE)
            middle = (sign["start"] + sign["end"]) // 2
            (intense_gaps if sign["cue"] else plain_gaps).append(mouth_gap[middle - 1 : middle + 2].mean())
            concept = next(c for c in CONCEPTS if c.word(lexicon).gloss == sign["gloss"])
            if sign["cue"]:
                cued += 1
                assert concept.category == "weather"
                assert concept.word(lexicon).intense in row["translation"]
        assert INTENSE not in row["orth"].lower()
    assert cued > 0
    # Open mouth vs closed at 64 px: about 2 px apart, one threshold separates (almost) all signs.
    assert np.mean(intense_gaps) > np.mean(plain_gaps) + 1.5
    threshold = 0.5 * (np.mean(intense_gaps) + np.mean(plain_gaps))
    assert np.mean(np.array(intense_gaps) > threshold) > 0.95 and np.mean(np.array(plain_gaps) < threshold) > 0.95


def test_text_is_a_function_of_glosses_and_cues_only():
    lang_a, lang_b, _ = build_languages(0, LanguageSpec("a", "A", "de", 30), LanguageSpec("b", "B", "es", 30), 0.4)
    rng = np.random.default_rng(0)
    for lang in (lang_a, lang_b):
        texts: dict = {}
        by_glosses: dict = {}
        for _ in range(1500):
            s = sample_sentence(lang, rng, 3, 7, 0.3)
            assert 3 <= len(s.glosses) <= 7 and set(s.glosses) <= set(lang.glosses)
            assert texts.setdefault((s.glosses, s.cues), s.text) == s.text
            by_glosses.setdefault(s.glosses, set()).add((s.cues, s.text))
            words = s.text.split()
            assert words[-1] == "." and all(w == w.lower() for w in words)
        # The same glosses with and without the cue give different texts: meaning only visible in the video.
        differing = [v for v in by_glosses.values() if len({c for c, _ in v}) > 1]
        assert differing and all(len({t for _, t in v}) == len(v) for v in differing)


@pytest.mark.parametrize("size_a, size_b", [(3, 3), (8, 9), (15, 15), (30, 30), (len(CONCEPTS), len(CONCEPTS))])
def test_every_gloss_of_any_vocabulary_size_occurs_in_sentences(size_a, size_b):
    lang_a, lang_b, _ = build_languages(0, LanguageSpec("a", "A", "de", size_a), LanguageSpec("b", "B", "es", size_b), 0.4)
    rng = np.random.default_rng(1)
    for lang in (lang_a, lang_b):
        assert len(lang.glosses) == len(set(lang.glosses)) == len(lang.primitives)
        used = {g for _ in range(600) for g in sample_sentence(lang, rng, 3, 7, 0.3).glosses}
        assert used == set(lang.glosses)


def test_mapping_pairs_share_primitives_and_other_signs_are_distinct(corpus, manifest):
    mapping = json.loads((corpus / "mapping.json").read_text())
    assert mapping["primary"] == "sgsl-a" and mapping["auxiliary"] == "sgsl-b"
    lang_a, lang_b = manifest["languages"]["sgsl-a"], manifest["languages"]["sgsl-b"]
    assert not set(lang_a["glosses"]) & set(lang_b["glosses"])
    assert len(mapping["pairs"]) == round(0.5 * 8)
    primitive = lambda sign: {k: v for k, v in sign.items() if k not in ("concept", "category")}  # noqa: E731
    for b, a in mapping["pairs"].items():
        assert b in lang_b["glosses"] and a in lang_a["glosses"]
        assert primitive(lang_b["signs"][b]) == primitive(lang_a["signs"][a])
        assert lang_b["signs"][b]["concept"] == lang_a["signs"][a]["concept"]
    assert sorted(lang_b["cross_lingual_glosses"]) == sorted(mapping["pairs"])
    # The same from the library, with the full-size inventories: every unmapped sign is distinct.
    lang_a, lang_b, pairs = build_languages(3, LanguageSpec("a", "A", "de", 30), LanguageSpec("b", "B", "es", 30), 0.4)
    assert len(pairs) == 12
    everything = list(lang_a.primitives.values()) + [p for g, p in lang_b.primitives.items() if g not in pairs]
    assert all(distinct(p, q) for i, p in enumerate(everything) for q in everything[i + 1 :])
    assert all(lang_b.primitives[b] == lang_a.primitives[a] for b, a in pairs.items())


def test_same_seed_is_byte_identical_across_worker_counts(tmp_path):
    for name, workers in (("one", 1), ("two", 2)):
        synthesize(tiny_config(tmp_path / name, *MINI, f"num_workers={workers}"), progress=False)
    compared = 0
    for path in sorted((tmp_path / "one").rglob("*")):
        if path.suffix in (".npy", ".csv", ".jsonl") or path.name == "mapping.json":
            assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes(), path
            compared += 1
    assert compared == 7 + 2 * 6 + 1  # 7 keypoint files, a CSV and a jsonl per language and split, mapping
    synthesize(tiny_config(tmp_path / "seed1", *MINI, "seed=1"), progress=False)
    train = Path("sgsl-a") / "sgsl-a.train.corpus.csv"
    assert (tmp_path / "seed1" / train).read_bytes() != (tmp_path / "one" / train).read_bytes()


def test_signer_pools_shared_by_default_or_held_out(tmp_path):
    def speakers(plan, split):
        return {v.signer.signer_id for v in plan.videos if v.language == "sgsl-a" and v.split == split}

    shared = plan_corpus(tiny_config(tmp_path, "primary.splits.dev=20"))
    assert speakers(shared, "dev") <= speakers(shared, "train") and len(speakers(shared, "dev")) > 1
    held_out = plan_corpus(tiny_config(tmp_path, "primary.eval_only_signers=1"))
    assert speakers(held_out, "dev") | speakers(held_out, "test") == {"sgsl-a-signer03"}
    assert "sgsl-a-signer03" not in speakers(held_out, "train")
    speeds = [s.speed for s in shared.signers["sgsl-a"]]
    assert sorted(speeds) == pytest.approx([0.7, 1.0, 1.3])  # spread evenly over 1 ± speed_range


def test_bad_config_key_or_value_names_it():
    with pytest.raises(ConfigError, match=r"primary\.vocab_sise: unknown key"):
        load_config(SynthesizeConfig, TINY, ["primary.vocab_sise=5"])
    with pytest.raises(ConfigError, match=r"num_workers"):
        load_config(SynthesizeConfig, TINY, ["num_workers=zero"])
    with pytest.raises(ConfigError, match=r"lexicon"):
        load_config(SynthesizeConfig, TINY, ["auxiliary.lexicon=de"])
    with pytest.raises(ConfigError, match=r"primary\.vocab_size"):
        load_config(SynthesizeConfig, TINY, ["primary.vocab_size=100"])
    assert main(["--config", str(TINY), "colour=red"]) == 2


def test_overwrite_protection_skip_resume_and_refusal(tmp_path, capsys):
    out = tmp_path / "corpus"
    config = tiny_config(out, *MINI)
    first = synthesize(config, progress=False)
    keypoints = sorted((out / "sgsl-a" / "keypoints").iterdir())
    stamp = keypoints[0].stat().st_mtime_ns

    # Same config, complete: skipped, nothing rewritten.
    assert synthesize(config, progress=False)["config_hash"] == first["config_hash"]
    assert "already complete" in capsys.readouterr().err
    assert keypoints[0].stat().st_mtime_ns == stamp

    # Another config into a complete corpus: refused without overwrite, replaced with it.
    with pytest.raises(SynthesisError, match="overwrite=true"):
        synthesize(tiny_config(out, *MINI, "seed=5"), progress=False)
    assert (out / "synthetic.json").exists()
    replaced = synthesize(tiny_config(out, *MINI, "seed=5", "overwrite=true"), progress=False)
    assert replaced["seed"] == 5 and replaced["config_hash"] != first["config_hash"]

    # An interrupted run of the same config (no manifest yet, marker present) resumes and ends
    # identical to a fresh run; without the marker, a manifest-less folder is refused.
    reference = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")}
    (out / "synthetic.json").unlink()
    (out / PARTIAL).write_text(json.dumps({"config_hash": replaced["config_hash"], "languages": ["sgsl-a", "sgsl-b"]}))
    keypoints[-1].unlink()
    resumed = synthesize(tiny_config(out, *MINI, "seed=5"), progress=False)
    assert resumed["resumed"] and not (out / PARTIAL).exists()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")} == reference
    (out / "synthetic.json").unlink()
    with pytest.raises(SynthesisError, match="not a complete corpus"):
        synthesize(tiny_config(out, *MINI, "seed=5"), progress=False)

    # A foreign non-empty folder: refused; with overwrite, only this job's files are replaced.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SynthesisError):
        synthesize(tiny_config(foreign, *MINI), progress=False)
    synthesize(tiny_config(foreign, *MINI, "overwrite=true"), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me" and (foreign / "synthetic.json").exists()


def test_frame_folders_match_the_video(tmp_path):
    out = tmp_path / "frames"
    synthesize(tiny_config(out, *MINI, "write_frame_folders=true"), progress=False)
    row = read_csv(out / "sgsl-b" / "sgsl-b.dev.corpus.csv")[0]
    folder = out / "sgsl-b" / "frames" / row["name"] / "1"
    pngs = sorted(folder.glob("images*.png"))
    assert len(pngs) == int(row["end"]) + 1 and pngs[0].name == "images0001.png"
    assert cv2.imread(str(pngs[0])).shape == (48, 48, 3)


def _recorded(spec, **conditions):
    settings = RenderSettings(96, 96, 25, MotionParams(), keypoint_noise_px=0.5, write_frame_folders=False, recording=RecordingConditions(**conditions))
    return render_video(spec, settings)


def test_recording_conditions_change_pixels_never_keypoints(tmp_path):
    spec = plan_corpus(tiny_config(tmp_path)).videos[0]
    clean, kp, signs = _recorded(spec)
    frames, kp2, signs2 = _recorded(spec, exposure=1.0, illumination=0.3, colour_cast=0.1, clutter=8, noise_std=6)
    np.testing.assert_array_equal(kp, kp2)
    assert signs == signs2
    assert frames.shape == clean.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - clean).mean() > 5


def test_motion_blur_averages_renders_over_the_shutter_time(tmp_path):
    spec = plan_corpus(tiny_config(tmp_path)).videos[0]
    clean, kp, _ = _recorded(spec)
    blurred, _, _ = _recorded(spec, exposure=1.0, subframes=2)
    # Two subframes over a full-frame shutter: the mean of this frame's and the previous frame's render.
    moved = [t for t in range(1, len(kp)) if np.abs(kp[t] - kp[t - 1]).max() > 1]
    assert len(moved) > 10
    for t in moved[:5]:
        expected = np.round((clean[t].astype(np.float32) + clean[t - 1]) / 2)
        np.testing.assert_allclose(blurred[t], expected, atol=1)
    np.testing.assert_array_equal(blurred[0], clean[0])


def test_illumination_is_one_gain_per_video_and_channel_and_noise_has_its_std(tmp_path):
    spec = plan_corpus(tiny_config(tmp_path)).videos[1]
    clean, _, _ = _recorded(spec)
    lit, _, _ = _recorded(spec, illumination=0.3, colour_cast=0.1)
    ok = (clean > 40) & (clean < 150)  # away from 0 and from clipping at 255
    gain = (lit[ok].astype(float) / clean[ok]).reshape(-1)
    per_channel = [np.median(lit[..., c][ok[..., c]] / clean[..., c][ok[..., c]]) for c in range(3)]
    for c in range(3):
        expected = np.clip(np.round(clean[..., c].astype(float) * per_channel[c]), 0, 255)
        assert np.abs(lit[..., c] - expected).max() <= 2, c
    assert 0.5 < gain.min() and gain.max() < 1.6
    noisy, _, _ = _recorded(spec, noise_std=6)
    diff = (noisy.astype(float) - clean)[(clean > 30) & (clean < 225)]
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 6) < 0.3


def test_clutter_paints_the_background_not_the_signer(tmp_path):
    spec = plan_corpus(tiny_config(tmp_path)).videos[0]
    clean, kp, _ = _recorded(spec)
    cluttered, _, _ = _recorded(spec, clutter=10)
    plain = np.all(clean == clean[0, 0, 0], axis=-1)  # the plain background colour
    changed = np.any(cluttered != clean, axis=-1)
    assert changed[plain].mean() > 0.2  # much of the background is covered
    # The signer is drawn on top, unchanged away from its anti-aliased outlines (2 px).
    inside = np.stack([cv2.erode((~m).astype(np.uint8), np.ones((5, 5), np.uint8)) for m in plain]).astype(bool)
    assert inside.mean() > 0.1 and not changed[inside].any()
    assert (cluttered[0] == cluttered[-1])[plain[0] & plain[-1]].all()  # one static background per video


def test_recording_config_rejects_out_of_range_values(tmp_path):
    with pytest.raises(ConfigError, match="recording.exposure"):
        tiny_config(tmp_path, "recording.exposure=1.5")
    with pytest.raises(ConfigError, match="recording.subframes"):
        tiny_config(tmp_path, "recording.subframes=1")


def test_clean_recording_keeps_the_corpus_hash_of_configs_without_it(tmp_path):
    config = tiny_config(tmp_path)
    data = config.model_copy(update={"out_dir": "", "overwrite": False, "num_workers": 1}).model_dump(mode="json")
    del data["recording"], data["idiolect"]  # a config written before `recording` and `idiolect` existed
    before = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert content_hash(config) == content_hash(tiny_config(tmp_path, "recording.exposure=0")) == before
    assert content_hash(tiny_config(tmp_path, "recording.exposure=0.5")) != before
    assert content_hash(tiny_config(tmp_path, "idiolect.laxness=0")) == before != content_hash(tiny_config(tmp_path, "idiolect.laxness=0.2"))


def _primitive(hands: str):
    from pipelines.synthetic.primitives import SignPrimitive

    return SignPrimitive("fist", "fist", "palm_in", 0, "chest", "right", "line", hands, "flat" if hands == "base" else None, None, 10)


def test_articulation_scales_shifts_and_relaxes_a_sign_exactly():
    from pipelines.synthetic import signer as body

    poses = np.tile(body.rest_pose(), (3, 1))
    poses[:, body.DOM_XY] = [[-0.2, 0.45], [-0.1, 0.25], [0.0, 0.05]]
    poses[:, body.ND_XY] = [[0.2, 0.45], [0.1, 0.25], [0.0, 0.05]]
    poses[:, body.DOM_SHAPE] = body.HANDSHAPES["fist"]
    art = Articulation(scale=1.1, shift=(0.02, -0.01), laxness=0.25)
    mirror = art.apply(poses, _primitive("mirror"))
    # wrist' = centre + 1.1 (wrist - centre) + shift; the other hand mirrored (x of the shift negated)
    np.testing.assert_allclose(mirror[0, body.DOM_XY], [-0.22 + 0.02, 0.25 + 0.22 - 0.01])
    np.testing.assert_allclose(mirror[1, body.DOM_XY], SPACE_CENTRE + [-0.11 + 0.02, -0.01])
    np.testing.assert_allclose(mirror[0, body.ND_XY], [0.22 - 0.02, 0.25 + 0.22 - 0.01])
    np.testing.assert_allclose(mirror[:, body.DOM_SHAPE], 0.75 * poses[:, body.DOM_SHAPE] + 0.25 * np.array(body.RELAXED))
    one = art.apply(poses, _primitive("one"))
    np.testing.assert_array_equal(one[:, body.ND_XY], poses[:, body.ND_XY])  # the resting hand stays at rest
    np.testing.assert_allclose(Articulation().apply(poses, _primitive("mirror")), poses, atol=1e-15)
    # a signer's variant of a sign is fixed; another signer's (seed) differs
    varied = Articulation(variant_std=0.02, seed=5)
    assert np.array_equal(varied.variant(_primitive("one")), Articulation(variant_std=0.02, seed=5).variant(_primitive("one")))
    assert not np.allclose(varied.variant(_primitive("one")), Articulation(variant_std=0.02, seed=6).variant(_primitive("one")))


def test_idiolect_gives_each_signer_its_own_signing_and_leaves_rest_poses(tmp_path):
    plain = plan_corpus(tiny_config(tmp_path))
    styled = plan_corpus(tiny_config(tmp_path, "idiolect.space_scale=0.15", "idiolect.space_shift=0.03", "idiolect.laxness=0.3",
                                      "idiolect.sign_variation=0.02"))
    assert {v.articulation for v in plain.videos} == {Articulation()}
    by_signer = {}
    for v in styled.videos:
        by_signer.setdefault(v.signer.signer_id, set()).add(v.articulation)
    assert all(len(a) == 1 for a in by_signer.values())  # one idiolect per signer, in every video
    arts = [next(iter(a)) for a in by_signer.values()]
    assert len({a.seed for a in arts}) == len(arts) and all(0.85 <= a.scale <= 1.15 and 0 <= a.laxness <= 0.3 for a in arts)
    # same sentence, same random stream: only the signs move; the rest poses at both ends do not
    video = styled.videos[0]
    signs = [(p, cue) for _, p, cue in video.signs]
    base, spans = sentence_poses(signs, 1.0, 0.0, np.random.default_rng(0))
    moved, spans2 = sentence_poses(signs, 1.0, 0.0, np.random.default_rng(0), articulation=video.articulation)
    assert spans == spans2
    np.testing.assert_array_equal(moved[0], base[0])
    np.testing.assert_array_equal(moved[-1], base[-1])
    assert not np.allclose(moved[spans[0][0]:spans[0][1]], base[spans[0][0]:spans[0][1]])
