"""Generate the synthetic two-language signing corpus (the project's embedded default).

    python jobs/synthesize.py --config configs/synthesize/demo.yaml out_dir=/tmp/sb_demo [key=value ...]

Layout of `out_dir` (other stages read it by path):
    synthetic.json      manifest, written last and atomically: a corpus without it is incomplete
    mapping.json        {"primary", "auxiliary", "pairs": {auxiliary gloss: primary gloss}}
    contact_sheet.png   frames of a few videos with their keypoints, for people
    <code>/             one folder per language, see pipelines/synthetic/generate.py

An out_dir that already holds a complete corpus of the same config (hash of everything except
out_dir, overwrite, num_workers) is left alone; an interrupted run of the same config resumes;
anything else non-empty needs overwrite=true (which deletes only what this job writes).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
from pydantic import Field, model_validator
from tqdm import tqdm

from common.config import ConfigError, StrictModel, config_hash, job_argument_parser, load_config
from common.files import atomic_write_text, atomic_write_with
from pipelines.records import SPLITS
from pipelines.synthetic.generate import RecordingConditions, RenderSettings, VideoResult, VideoSpec, contact_sheet, render_video, write_split_files, write_video
from pipelines.synthetic.language import CONCEPTS, LanguageSpec, SignLanguage, build_languages, sample_sentence
from pipelines.synthetic.motion import INTENSE, Articulation, MotionParams
from pipelines.synthetic.signer import SignerStyle, sample_signer

SCHEMA_VERSION = 1
MANIFEST = "synthetic.json"
MAPPING = "mapping.json"
CONTACT_SHEET = "contact_sheet.png"
PARTIAL = ".synthesize.partial.json"  # marks a run in progress: same config → resume


class SplitSizes(StrictModel):
    train: int = Field(ge=0)
    dev: int = Field(ge=0)
    test: int = Field(ge=0)


class LanguageConfig(StrictModel):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")  # folder and name prefix, e.g. "sgsl-a"
    name: str
    lexicon: Literal["de", "es"]  # gloss names and text language
    vocab_size: int = Field(ge=3, le=len(CONCEPTS))
    num_signers: int = Field(ge=1)
    eval_only_signers: int = Field(0, ge=0)  # > 0: dev/test use only these signers, unseen in train
    splits: SplitSizes

    @model_validator(mode="after")
    def _signers(self) -> "LanguageConfig":
        if self.eval_only_signers >= self.num_signers:
            raise ValueError(f"eval_only_signers ({self.eval_only_signers}) must be < num_signers ({self.num_signers})")
        return self


class SentenceConfig(StrictModel):
    min_signs: int = Field(3, ge=1)
    max_signs: int = Field(7, ge=1)
    intense_prob: float = Field(0.3, ge=0, le=1)  # per weather sign that may carry the intensity cue

    @model_validator(mode="after")
    def _range(self) -> "SentenceConfig":
        if self.min_signs > self.max_signs:
            raise ValueError(f"min_signs ({self.min_signs}) > max_signs ({self.max_signs})")
        return self


class MotionConfig(StrictModel):
    transition_frames: tuple[int, int] = (2, 5)  # min, max frames between signs
    rest_frames: tuple[int, int] = (1, 2)  # min, max frames of rest pose at each end
    duration_jitter: float = Field(0.1, ge=0, lt=1)  # relative, per sign
    speed_range: float = Field(0.3, ge=0, lt=1)  # signer speeds spread evenly over 1 ± speed_range
    jitter: float = Field(0.003, ge=0)  # hand/head wobble std, body units (~0.3 px at 128 px)

    @model_validator(mode="after")
    def _ranges(self) -> "MotionConfig":
        for key in ("transition_frames", "rest_frames"):
            lo, hi = getattr(self, key)
            if not 0 <= lo <= hi:
                raise ValueError(f"{key} must be (min, max) with 0 <= min <= max, got {(lo, hi)}")
        return self


class IdiolectConfig(StrictModel):
    """Each signer's own way of signing (pipelines.synthetic.motion.Articulation), drawn once per
    signer from its own random stream; all 0 = every signer signs alike (and the corpus hash and
    content are those of a corpus made before this existed)."""

    space_scale: float = Field(0.0, ge=0, lt=0.5)  # signing-space size drawn in 1 ± this
    space_shift: float = Field(0.0, ge=0)  # std of the signing space's shift, body units
    laxness: float = Field(0.0, ge=0, le=1)  # handshape laxness (towards the relaxed hand) drawn in [0, this]
    sign_variation: float = Field(0.0, ge=0)  # std of each sign's own wrist offset per signer, body units


class RecordingConfig(StrictModel):
    """Camera and studio: they degrade the pixels only (see RecordingConditions); 0 = clean."""

    exposure: float = Field(0.0, ge=0, le=1)  # shutter time / frame interval: motion blur
    subframes: int = Field(4, ge=2)  # renders averaged per blurred frame
    illumination: float = Field(0.0, ge=0, lt=1)  # per-video brightness gain in 1 ± this
    colour_cast: float = Field(0.0, ge=0, le=0.5)  # std of a per-video, per-channel gain
    clutter: int = Field(0, ge=0)  # blurred coloured shapes on each video's background
    clutter_contrast: int = Field(255, ge=0, le=255)  # their channels' largest offset from the background colour
    noise_std: float = Field(0.0, ge=0)  # per-pixel sensor noise, 0-255 scale


class SynthesizeConfig(StrictModel):
    out_dir: str
    seed: int = 0
    overwrite: bool = False
    num_workers: int = Field(1, ge=1)  # processes; 1 = in-process
    width: int = Field(128, ge=32)  # frame size, pixels
    height: int = Field(128, ge=32)
    fps: int = Field(25, ge=1)  # container rate; motion timing is in frames at 25 fps
    keypoint_noise_px: float = Field(0.5, ge=0)  # on the saved keypoints only
    write_frame_folders: bool = False  # also PHOENIX-style frames/<name>/1/images0001.png
    cross_lingual_share: float = Field(0.4, ge=0, le=1)  # of the auxiliary vocabulary
    primary: LanguageConfig
    auxiliary: LanguageConfig
    sentence: SentenceConfig = SentenceConfig()
    motion: MotionConfig = MotionConfig()
    idiolect: IdiolectConfig = IdiolectConfig()
    recording: RecordingConfig = RecordingConfig()
    contact_sheet_videos: int = Field(4, ge=0)
    contact_sheet_frames: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _languages(self) -> "SynthesizeConfig":
        if self.primary.code == self.auxiliary.code:
            raise ValueError(f"primary.code and auxiliary.code must differ (both {self.primary.code!r})")
        if self.primary.lexicon == self.auxiliary.lexicon:
            raise ValueError(f"primary.lexicon and auxiliary.lexicon must differ (both {self.primary.lexicon!r}): gloss names would collide")
        return self


class SynthesisError(RuntimeError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def content_hash(config: SynthesizeConfig) -> str:
    """Hash of everything that changes the corpus' content (not out_dir, overwrite, num_workers).
    A clean `recording` and a zero `idiolect` (all defaults) are left out: corpora made before they
    existed keep their hash."""
    content = config.model_copy(update={"out_dir": "", "overwrite": False, "num_workers": 1})
    exclude = {k for k, clean in (("recording", RecordingConfig()), ("idiolect", IdiolectConfig())) if getattr(config, k) == clean}
    return config_hash(content, exclude=exclude or None)


# --- planning ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    languages: tuple[SignLanguage, SignLanguage]
    mapping: dict[str, str]
    signers: dict[str, list[SignerStyle]]
    videos: list[VideoSpec]


def draw_articulation(idiolect: IdiolectConfig, rng: np.random.Generator) -> Articulation:
    """One signer's idiolect drawn from `idiolect`'s ranges; the identity when they are all 0."""
    if idiolect == IdiolectConfig():
        return Articulation()
    return Articulation(scale=float(rng.uniform(1 - idiolect.space_scale, 1 + idiolect.space_scale)),
                        shift=(float(rng.normal(0, idiolect.space_shift)), float(rng.normal(0, idiolect.space_shift))),
                        laxness=float(rng.uniform(0, idiolect.laxness)), variant_std=idiolect.sign_variation,
                        seed=int(rng.integers(2**32)))


def plan_corpus(config: SynthesizeConfig) -> Plan:
    """Languages, signers and every video's sentence, signer and seed — all from `config.seed`."""
    specs = [LanguageSpec(c.code, c.name, c.lexicon, c.vocab_size) for c in (config.primary, config.auxiliary)]
    lang_a, lang_b, mapping = build_languages(config.seed, *specs, config.cross_lingual_share)
    signers, videos = {}, []
    for li, (lang, lc) in enumerate(((lang_a, config.primary), (lang_b, config.auxiliary))):
        rng = np.random.default_rng([config.seed, 2, li])
        # Speeds spread evenly over 1 ± speed_range, so every pool's mean speed is 1.
        speeds = rng.permutation(1 + config.motion.speed_range * np.linspace(-1, 1, lc.num_signers)) if lc.num_signers > 1 else [1.0]
        pool = [sample_signer(rng, f"{lc.code}-signer{i + 1:02d}", float(speeds[i]), config.motion.jitter) for i in range(lc.num_signers)]
        idiolects = {s.signer_id: draw_articulation(config.idiolect, np.random.default_rng([config.seed, 4, li, i])) for i, s in enumerate(pool)}
        signers[lang.code] = pool
        seen = pool[: lc.num_signers - lc.eval_only_signers]
        unseen = pool[lc.num_signers - lc.eval_only_signers :] or pool
        for si, split in enumerate(SPLITS):
            rng = np.random.default_rng([config.seed, 3, li, si])
            candidates = seen if split == "train" else unseen
            for i in range(getattr(lc.splits, split)):
                s = config.sentence
                sentence = sample_sentence(lang, rng, s.min_signs, s.max_signs, s.intense_prob)
                signer = candidates[rng.integers(len(candidates))]
                signer = dataclasses.replace(  # a slightly different camera framing per video
                    signer,
                    scale=signer.scale * float(rng.uniform(0.98, 1.02)),
                    offset=(signer.offset[0] + float(rng.uniform(-0.01, 0.01)), signer.offset[1] + float(rng.uniform(-0.01, 0.01))),
                )
                signs = tuple((g, lang.primitives[g], c) for g, c in zip(sentence.glosses, sentence.cues))
                videos.append(VideoSpec(f"{lang.code}_{split}_{i:05d}", lang.code, split, signer, signs, sentence.text, int(rng.integers(2**63)),
                                        idiolects[signer.signer_id]))
    return Plan((lang_a, lang_b), mapping, signers, videos)


# --- the output folder ------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _prepare_out_dir(out: Path, config: SynthesizeConfig, digest: str) -> str:
    """"fresh", "resume" or "complete"; raises SynthesisError when out_dir holds something else."""
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return "fresh"
    old, partial_run = _read_json(out / MANIFEST), _read_json(out / PARTIAL)
    if not config.overwrite:
        if old is not None and old.get("config_hash") == digest:
            return "complete"
        if old is None and partial_run is not None and partial_run.get("config_hash") == digest:
            return "resume"
        what = f"a corpus of another config (hash {old.get('config_hash')}, this one {digest})" if old else "files that are not a complete corpus of this config"
        raise SynthesisError(f"{out}: not empty, holds {what}; pass overwrite=true to replace it, or choose another out_dir")
    (out / MANIFEST).unlink(missing_ok=True)  # first: never looks complete while being replaced
    codes = {config.primary.code, config.auxiliary.code}
    for previous in (old, partial_run):
        codes |= set((previous or {}).get("languages", {}))
    for name in (MAPPING, CONTACT_SHEET, PARTIAL, *sorted(codes)):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return "fresh"


# --- running ----------------------------------------------------------------------------------
def _init_worker() -> None:
    cv2.setNumThreads(1)


def _render_all(plan: Plan, settings: RenderSettings, out: Path, resume: bool, num_workers: int, progress: bool) -> list[VideoResult]:
    work = partial(write_video, settings=settings, out_dir=str(out), resume=resume)
    results: list[VideoResult] = []
    frames = 0
    with tqdm(total=len(plan.videos), unit="video", desc="synthesize", disable=not progress, file=sys.stderr) as bar:

        def advance(result: VideoResult) -> None:
            nonlocal frames
            results.append(result)
            frames += result.num_frames
            bar.set_postfix(frames=frames, refresh=False)
            bar.update()

        if num_workers == 1:
            for spec in plan.videos:
                advance(work(spec))
        else:
            chunk = max(1, min(16, len(plan.videos) // (8 * num_workers)))
            with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
                for result in pool.map(work, plan.videos, chunksize=chunk):
                    advance(result)
    return results


def _counts(plan: Plan, results: list[VideoResult]) -> dict:
    crossing = {**{b: True for b in plan.mapping}, **{a: True for a in plan.mapping.values()}}
    per_language: dict[str, dict] = {}
    for lang in plan.languages:
        per_language[lang.code] = {}
        for split in SPLITS:
            rs = [r for r in results if r.language == lang.code and r.split == split]
            used = {g for r in rs for g in r.glosses}
            frames = sum(r.num_frames for r in rs)
            per_language[lang.code][split] = {
                "videos": len(rs),
                "frames": frames,
                "mean_frames": round(frames / len(rs), 2) if rs else 0.0,
                "signs": sum(len(r.glosses) for r in rs),
                "glosses": len(used),
                "cross_lingual_glosses": len(used & crossing.keys()),
                "intense_cues": sum(s["cue"] == INTENSE for r in rs for s in r.signs),
            }
    return {"videos": len(results), "frames": sum(r.num_frames for r in results), "languages": per_language}


def _language_entry(lang: SignLanguage, lc: LanguageConfig, plan: Plan) -> dict:
    crossing = set(plan.mapping) if lang.role == "auxiliary" else set(plan.mapping.values())
    return {
        "name": lang.name,
        "role": lang.role,
        "spoken_language": lang.lexicon,
        "glosses": lang.glosses,
        "splits": lc.splits.model_dump(),
        "cross_lingual_glosses": [g for g in lang.glosses if g in crossing],
        "signs": {lang.gloss(c): {"concept": c.key, "category": c.category, **dataclasses.asdict(lang.primitives[lang.gloss(c)])} for c in lang.concepts},
        "signers": {s.signer_id: dataclasses.asdict(s) for s in plan.signers[lang.code]},
        # who signs each split: with eval_only_signers > 0 the dev and test signers never appear in train
        "split_signers": {split: sorted({v.signer.signer_id for v in plan.videos if v.language == lang.code and v.split == split})
                          for split in SPLITS},
        "signer_independent": lc.eval_only_signers > 0,
    }


def _write_contact_sheet(plan: Plan, settings: RenderSettings, path: Path, count: int, columns: int) -> None:
    chosen: list[VideoSpec] = []
    for want_cue in (True, False):
        for lang in plan.languages:
            match = next((v for v in plan.videos if v.language == lang.code and v not in chosen and any(c == INTENSE for _, _, c in v.signs) == want_cue), None)
            if match is not None and len(chosen) < count:
                chosen.append(match)
    if not chosen:
        return
    chosen.sort(key=lambda v: v.name)
    sheet = contact_sheet([(v, *render_video(v, settings)) for v in chosen], columns, scale=max(1, round(256 / settings.width)))
    atomic_write_with(path, lambda tmp: cv2.imwrite(str(tmp), sheet))


def synthesize(config: SynthesizeConfig, progress: bool = True) -> dict:
    """Generate (or find complete, or resume) the corpus described by `config`; returns the manifest."""
    started = time.perf_counter()
    out = Path(config.out_dir)
    digest = content_hash(config)
    state = _prepare_out_dir(out, config, digest)
    if state == "complete":
        print(f"{out}: already complete (config hash {digest}); nothing to do", file=sys.stderr)
        return json.loads((out / MANIFEST).read_text())
    plan = plan_corpus(config)
    atomic_write_text(out / PARTIAL, json.dumps({"config_hash": digest, "languages": [lang.code for lang in plan.languages]}))
    m = config.motion
    settings = RenderSettings(config.width, config.height, config.fps, MotionParams(m.transition_frames, m.rest_frames, m.duration_jitter), config.keypoint_noise_px, config.write_frame_folders, RecordingConditions(**config.recording.model_dump()))
    results = _render_all(plan, settings, out, state == "resume", config.num_workers, progress)

    for lang in plan.languages:
        for split in SPLITS:
            write_split_files(out / lang.code, lang.code, split, [r for r in results if r.language == lang.code and r.split == split])
    lang_a, lang_b = plan.languages
    atomic_write_text(out / MAPPING, json.dumps({"primary": lang_a.code, "auxiliary": lang_b.code, "pairs": plan.mapping}, indent=2, ensure_ascii=False) + "\n")
    if config.contact_sheet_videos:
        _write_contact_sheet(plan, settings, out / CONTACT_SHEET, config.contact_sheet_videos, config.contact_sheet_frames)

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "seed": config.seed,
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "fps": config.fps,
        "frame_size": {"width": config.width, "height": config.height},
        "keypoints": {"layout": "coco-wholebody-133", "shape": "(T, 133, 3)", "channels": ["x_px", "y_px", "score"]},
        "cues": {INTENSE: "raised eyebrows, wide eyes and open mouth during a weather sign; in the text, not in the glosses"},
        "languages": {lang.code: _language_entry(lang, lc, plan) for lang, lc in zip(plan.languages, (config.primary, config.auxiliary))},
        "mapping": {"primary": lang_a.code, "auxiliary": lang_b.code, "pairs": plan.mapping},
        "counts": _counts(plan, results),
        "generation_seconds": round(time.perf_counter() - started, 2),
        "resumed": state == "resume",
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)
    return manifest


def summary_table(manifest: dict) -> str:
    """Per language and split: videos, frames, mean frames/video, glosses, cross-lingual glosses, cues."""
    header = f"{'language':<10} {'split':<6} {'videos':>7} {'frames':>8} {'frames/video':>12} {'signs':>7} {'glosses':>8} {'x-lingual':>9} {'intense':>8}"
    lines = [header, "-" * len(header)]
    for code, splits in manifest["counts"]["languages"].items():
        vocab = len(manifest["languages"][code]["glosses"])
        for split, c in splits.items():
            lines.append(
                f"{code:<10} {split:<6} {c['videos']:>7} {c['frames']:>8} {c['mean_frames']:>12.1f} {c['signs']:>7} {str(c['glosses']) + '/' + str(vocab):>8} {c['cross_lingual_glosses']:>9} {c['intense_cues']:>8}"
            )
    counts = manifest["counts"]
    lines.append("-" * len(header))
    lines.append(f"total: {counts['videos']} videos, {counts['frames']} frames, {len(manifest['mapping']['pairs'])} cross-lingual sign pairs, {manifest['generation_seconds']:.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_argument_parser("Generate the synthetic two-language signing corpus.")
    args = parser.parse_args(argv)
    try:
        config = load_config(SynthesizeConfig, args.config, args.overrides)
        manifest = synthesize(config)
    except (ConfigError, SynthesisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(manifest))
    print(f"corpus: {Path(config.out_dir).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
