"""Translate sign videos with a trained model: raw videos or frame folders -> glosses and text.

    python jobs/translate.py VIDEO_OR_FRAME_FOLDER... --checkpoint RUN_OR_CHECKPOINT [--out FILE.jsonl]
        [--batch-size 1] [--num-beams K] [--device auto|cpu|cuda] [--keypoints FILE.npy ...] [--figure DIR]

Inputs: video files (.mp4, .avi, ...) or folders of frame images taken in name order (PHOENIX
`<name>/1/*.png`, CSL-Daily `<name>/*.jpg`). The checkpoint is a Sign2Text one (a run directory
resolves to its best checkpoint): glosses and text; a Sign2Gloss one gives glosses only.

Each input is made into what the model saw in training: decoded and cropped / resized / subsampled
by the `frames` settings of the training shards (jobs/preprocess.py, read from the shards'
manifest that the checkpoint's run config names; preprocessing's defaults when it is not
readable), stored as the shards store frames (JPEG at their quality), keypoints from the back-end
the model was trained with (only when the model reads keypoints), then the checkpoint's evaluation
collate (its frame_stride, evaluation crop and size). The `groundtruth` back-end is the synthetic
corpus's saved keypoints, which a raw video has not: pass them with `--keypoints` (one .npy per
input, T x 133 x 3 in the video's pixels); `--keypoints` also replaces any other back-end.

Output: one JSON line per input, printed and (with `--out`, atomically) written:
{"input", "glosses", "text" (null for a Sign2Gloss checkpoint), "frames" (frames decoded)}, or
{"input", "error"} for an input that cannot be translated (missing, unreadable, no images, too
short for the model); the exit status is then 1. `--figure DIR` writes `<DIR>/<name>.png` per
input: frames with their keypoints and the prediction (training/sample_figure.py).
Clips of a batch are padded to the longest and the backbone's temporal convolutions see that
padding, so a video's result can change slightly with its batch mates (`--batch-size 1`: alone).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from common.files import atomic_write_text
from pipelines.keypoints.base import GroundTruthConfig, KeypointConfig, KeypointEstimator, VideoFrames, make_estimator
from pipelines.keypoints.groundtruth import GroundTruthKeypoints
from pipelines.recognition_batches import RecognitionCollate
from pipelines.video_io import FrameSpec, VideoError, decode_video, encode_jpeg_frames, locate
from training.checkpoint import CheckpointError, load_sign2gloss, load_sign2text, model_family
from training.cli import LOG_FORMAT
from training.distributed import autocast
from training.evaluation import checkpoint_head, decode_heads, decode_sign2text, run_model

log = logging.getLogger("translate")

PREPROCESS_JPEG_QUALITY = 90  # jobs/preprocess.py's default (shards.jpeg_quality)


# ---- the model and how its training inputs were made ---------------------------------------------


def load_model(path: str | Path, device: torch.device):
    """A Sign2Text checkpoint (glosses and text) or a Sign2Gloss one (glosses); any other family is
    a CheckpointError saying what it is."""
    family = model_family(path)
    if family == "sign2text":
        return load_sign2text(path, map_location=device)
    if family == "sign2gloss":
        return load_sign2gloss(path, map_location=device)
    raise CheckpointError(f"{path}: a {family} checkpoint; translating videos needs a sign2text checkpoint "
                          "(jobs/train_sign2text.py), or a sign2gloss one for glosses only")


def recognizer_config(ck) -> Any:
    """The TwoStreamConfig of the checkpoint's recognition network."""
    return ck.model.recognizer.config if hasattr(ck.model, "recognizer") else ck.model.config


@dataclass
class InputSettings:
    """How the training shards were made from videos: jobs/preprocess.py's `frames` and `keypoints`
    settings and the JPEG quality of the stored frames (None: raw); `source` says where from."""

    frames: FrameSpec
    keypoints: KeypointConfig
    jpeg_quality: int | None
    source: str


def training_inputs(ck) -> InputSettings:
    """The settings of the shards the checkpoint's run trained on (their manifest), or
    preprocessing's defaults (whole frames, every frame, JPEG 90) with a warning."""
    from pipelines.shards import dataset_uri, read_manifest

    data = ck.run_config.get("data", {})
    backend = ck.keypoint_backend or "none"
    reason = f"{ck.path}: its run config names no shards"
    if data.get("shards"):
        where = dataset_uri(data["shards"], data.get("dataset"))
        try:
            manifest = read_manifest(data["shards"], data.get("dataset"))
            config = manifest["config"]
            keypoints = KeypointConfig.model_validate({**config["keypoints"], "backend": ck.keypoint_backend or config["keypoints"]["backend"]})
            quality = config["shards"]["jpeg_quality"] if manifest["frame_storage"] == "jpeg" else None
            return InputSettings(FrameSpec.model_validate(config["frames"]), keypoints, quality, f"{where}/manifest.json")
        except (OSError, ValueError, KeyError) as exc:
            reason = f"the training shards' manifest is not readable ({exc})"
    log.warning("%s; decoding as jobs/preprocess.py does by default: whole frames, every frame, JPEG %d", reason,
                PREPROCESS_JPEG_QUALITY)
    return InputSettings(FrameSpec(), KeypointConfig(backend=backend), PREPROCESS_JPEG_QUALITY, "preprocessing defaults")


def keypoint_estimator(ck, settings: InputSettings, files: list[str] | None) -> KeypointEstimator | None:
    """What gives the inputs their keypoints: the `--keypoints` files (moved like the frames; with the
    training's estimator noise when the model learnt from noisy `groundtruth` keypoints), else the
    back-end the model was trained with, or None when the model reads no keypoints."""
    backend = settings.keypoints.backend
    if files:
        noise = settings.keypoints.groundtruth.noise if backend == "groundtruth" else None
        return GroundTruthKeypoints(GroundTruthConfig(noise=noise))
    if not ck.uses_keypoints:
        return None
    if backend == "none":
        raise CheckpointError(f"{ck.path}: the model reads keypoints but neither the checkpoint nor its shards say which "
                              "back-end made them; pass --keypoints FILE.npy (one per input)")
    if backend == "groundtruth":
        raise CheckpointError(
            f"{ck.path}: the model was trained on `groundtruth` keypoints, the synthetic corpus's saved ones "
            "(keypoints/<name>.npy beside its videos/), which a raw video does not have; pass them with --keypoints "
            "FILE.npy (one per input), or use a model trained on the mediapipe or hrnet back-end")
    if backend == "hrnet" and settings.keypoints.hrnet.checkpoint is None:
        raise CheckpointError(f"{ck.path}: the model was trained on hrnet keypoints, whose weights the training shards' "
                              f"manifest names, and that was not readable ({settings.source}); pass --keypoints instead")
    try:
        return make_estimator(settings.keypoints)
    except ImportError as exc:
        raise CheckpointError(f"{ck.path}: the model was trained on {backend} keypoints and that back-end is not "
                              f"installed ({exc}): bash scripts/install_keypoints.sh {backend}") from None


# ---- one input -> a shard row as preprocessing writes it ------------------------------------------


@dataclass
class Clip:
    """One input made ready: `row` (a shard row, the collate's input), the decoded frames (uint8
    (T, H, W, 3), after the training's `frames` settings) and their keypoints ((T, 133, 3) or None)."""

    input: str
    name: str
    frames: np.ndarray
    keypoints: np.ndarray | None
    row: dict
    source_frames: int


def read_input(path: str, name: str, settings: InputSettings, estimator: KeypointEstimator | None,
               keypoint_file: str | None = None) -> Clip:
    """Decode a video file or frame folder as preprocessing does. Raises VideoError (missing,
    unreadable, no images), or ValueError / FileNotFoundError from the keypoints, naming the file."""
    video = decode_video(locate("", path), settings.frames)
    keypoints = None
    if estimator is not None:
        frames = VideoFrames(name, video.frames, video.indices, video.geometry, keypoint_file or "")
        keypoints = estimator.estimate([frames])[0].astype(settings.keypoints.dtype)
    stored = encode_jpeg_frames(video.frames, settings.jpeg_quality) if settings.jpeg_quality else video.frames
    row = {"name": name, "gloss": "", "text": None, "frames": stored, "num_frames": len(video.frames),
           "height": video.frames.shape[1], "width": video.frames.shape[2], "keypoints": keypoints}
    return Clip(path, name, video.frames, keypoints, row, video.source_frames)


def check_length(clip: Clip, prepared: dict, collate: RecognitionCollate, min_frames: int) -> None:
    """A ValueError naming the input when the model would see fewer than `min_frames` frames."""
    seen = len(collate.video.plan([prepared])[0]["indices"])
    if seen < min_frames:
        raise ValueError(f"{clip.input}: too short for the model: {clip.source_frames} frame(s) decoded, {seen} after its "
                         f"input settings (frame_stride {collate.frame_stride}), it needs at least {min_frames} (one output "
                         f"step of its S3D per {min_frames} frames)")


def input_names(paths: list[str]) -> list[str]:
    """A distinct name per input: the file or folder name (a PHOENIX `<name>/1` folder: `<name>`)."""
    names = []
    for p in paths:
        path = Path(p.rstrip("/"))
        base = path.parent.name if path.name == "1" and path.is_dir() else path.stem
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


# ---- batches through the model ----------------------------------------------------------------


@dataclass
class Decoding:
    device: torch.device
    num_beams: int
    length_penalty: float
    max_length: int
    gloss_beam_width: int


def predict(ck, batch: dict, decoding: Decoding) -> tuple[list[str], list[str | None]]:
    """(glosses, texts) of a collated batch; texts None for a Sign2Gloss checkpoint."""
    if hasattr(ck, "tokenizer"):
        out = decode_sign2text(ck.model, [batch], ck.tokenizer, ck.vocab, num_beams=decoding.num_beams,
                               length_penalty=decoding.length_penalty, max_length=decoding.max_length,
                               device=decoding.device)
        return [" ".join(g) for g in out["gloss_hyps"]], out["hyps"]
    head = checkpoint_head(ck)
    with torch.no_grad(), autocast(decoding.device):
        out = run_model(ck.model, batch, decoding.device, ck.uses_keypoints)
    ids = decode_heads(out, [head], decoding.gloss_beam_width, ck.decode_classes)[head]
    return [" ".join(ck.vocab.decode(x)) for x in ids], [None] * len(ids)


def translate(ck, inputs: list[str], *, settings: InputSettings, estimator: KeypointEstimator | None,
              keypoint_files: list[str] | None, decoding: Decoding, batch_size: int,
              figure_dir: str | Path | None = None, emit: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Translate every input, `batch_size` at a time, in input order: one result dict per input
    (`emit`ted as soon as known). An input that cannot be read is a result with `error`."""
    collate = RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses, frame_stride=ck.frame_stride)
    min_frames = recognizer_config(ck).temporal_stride
    names, results = input_names(inputs), []
    ck.model.to(decoding.device).eval()
    with tqdm(total=len(inputs), desc="translate", unit="video") as progress:
        for start in range(0, len(inputs), batch_size):
            clips, prepared, batch_results = [], [], []
            for i in range(start, min(start + batch_size, len(inputs))):
                try:
                    clip = read_input(inputs[i], names[i], settings, estimator, keypoint_files[i] if keypoint_files else None)
                    row = collate.prepare([clip.row])[0]
                    check_length(clip, row, collate, min_frames)
                except (VideoError, ValueError, FileNotFoundError) as exc:
                    batch_results.append({"input": inputs[i], "error": str(exc)})
                    continue
                clips.append(clip)
                prepared.append(row)
                batch_results.append(None)
            glosses, texts = predict(ck, collate.collate_prepared(prepared), decoding) if clips else ([], [])
            done = iter(zip(clips, glosses, texts))
            for result in batch_results:
                if result is None:
                    clip, g, t = next(done)
                    result = {"input": clip.input, "glosses": g, "text": t, "frames": clip.source_frames}
                    if figure_dir is not None:
                        plot_clip(clip, g, t, Path(figure_dir) / f"{clip.name}.png")
                emit(result)
                results.append(result)
            progress.update(len(batch_results))
    return results


def plot_clip(clip: Clip, glosses: str, text: str | None, path: Path) -> None:
    from training.sample_figure import plot_sample

    plot_sample(clip.frames, clip.keypoints, glosses_hyp=glosses, glosses_ref=None, text_hyp=text, text_ref=None, path=path)


# ---- command line ------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FRAME_FOLDER")
    parser.add_argument("--checkpoint", required=True, help="a Sign2Text (or Sign2Gloss) run directory or checkpoint")
    parser.add_argument("--out", help="write the results here as JSON lines")
    parser.add_argument("--batch-size", type=int, default=1, help="videos per model call (default 1: each alone)")
    parser.add_argument("--num-beams", type=int, help="beam width of the translation (default: the run's decode.num_beams, or 5)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--keypoints", nargs="+", metavar="FILE.npy",
                        help="keypoints per input, in the same order (T x 133 x 3 in the video's pixels)")
    parser.add_argument("--figure", metavar="DIR", help="write <DIR>/<name>.png per input: frames, keypoints, prediction")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.num_beams is not None and args.num_beams < 1):
        parser.error("--batch-size and --num-beams must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all translated, 1 some inputs failed (their lines say why), 2 unusable
    checkpoint or options."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        if args.keypoints and len(args.keypoints) != len(args.inputs):
            raise ValueError(f"--keypoints: {len(args.keypoints)} file(s) for {len(args.inputs)} input(s); give one per input")
        device = pick_device(args.device)
        ck = load_model(args.checkpoint, device)
        settings = training_inputs(ck)
        estimator = keypoint_estimator(ck, settings, args.keypoints)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_decode = ck.run_config.get("decode", {})
    max_length = run_decode.get("max_length") or getattr(ck, "text", {}).get("max_target_length", 100)
    decoding = Decoding(device, args.num_beams or run_decode.get("num_beams", 5), run_decode.get("length_penalty", 1.0),
                        max_length, run_decode.get("beam_width", 5))
    results = translate(ck, args.inputs, settings=settings, estimator=estimator, keypoint_files=args.keypoints,
                        decoding=decoding, batch_size=args.batch_size, figure_dir=args.figure,
                        emit=lambda r: tqdm.write(json.dumps(r, ensure_ascii=False), file=sys.stdout))
    if args.out:
        atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        print(f"error: {len(failed)} of {len(results)} input(s) not translated:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
