"""Cross-lingual sign mapping (Wei & Chen, ICCV 2023): a multilingual ISLR checkpoint maps each sign of
the auxiliary language to a sign of the primary language, or lets it keep its own label.

    python jobs/map_signs.py --config configs/mapping/demo.yaml [key=value ...]

The two languages are those of the two dictionaries (jobs/build_dictionary.py); the ISLR checkpoint
(jobs/train_islr.py) needs a head for each. `strategy` (pipelines/sign_mapping.py has the rules):
`class` (default) averages, over each auxiliary sign's clips, the primary head's softmax and takes
the argmax; `instance` lets each clip vote with its own argmax (confidence: the winning share of the
clips); `weights` takes the row softmax of the product of the two heads' weight matrices. A sign
whose confidence reaches `threshold` is relabelled to its primary sign; the others keep their label
as `<language>:<gloss>` (threshold 1.0: nothing mapped, the multi-task baseline).

For `class` and `instance`, Ray Data runs the model over the clips of the auxiliary dictionary's
`splits`: an actor pool holds the checkpoint (one GPU per actor where the cluster has GPUs,
`resources.gpus_per_actor`; bf16 autocast there, float32 on CPU), each clip brought to the
checkpoint's `clip_frames` as the ISLR evaluation does (centred window, whole frame). `weights`
reads only the two heads.

Output, `<out_dir>/<name>/`, each file written atomically, summary.json last:
    mapping.csv        one row per auxiliary gloss (of the scored clips, the annotations and, for
                       `weights`, the auxiliary head), by gloss: aux_gloss, primary_gloss (best
                       primary sign; empty without scores), confidence, mapped, clips, label
    mapping.json       {"primary", "auxiliary", "pairs": {aux gloss: primary gloss, mapped ones}} as
                       the synthetic corpus's mapping.json, plus "labels" (every gloss's label),
                       strategy, threshold and checkpoint
    annotations.jsonl  the auxiliary corpus's sentences (its shards: `annotations`, by default the
                       auxiliary dictionary's source shards; `annotation_splits`) relabelled, one JSON
                       object a line: name (the shards' sample name), split, gloss (the relabelled
                       sequence, space-separated: primary glosses and `<language>:<gloss>` labels),
                       source_gloss (as annotated)
    relabelled.jsonl   the relabel file of the recognition recipe's auxiliary corpus
                       (pipelines/auxiliary_labels.py): {"name", "gloss"} per sentence of
                       `relabel_split`; `relabelled_t0.30.jsonl` etc. the same at each of
                       `sweep_thresholds` (the clips are scored once)
    pairs.png          the `figure_pairs` most confident pairs: frames of the auxiliary sign's clip
                       beside frames of a clip of its primary sign (each the dictionary's clip of
                       highest alignment confidence)
    summary.json       counts; with `truth` (a synthetic corpus folder, whose mapping.json holds the
                       true pairs) the accuracy on the truly shared signs and the share of unshared
                       signs mapped (pipelines.sign_mapping.mapping_accuracy), also printed
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pyarrow.parquet as pq
import torch
from pydantic import Field
from tqdm import tqdm

from common.config import ConfigError, StrictModel, job_argument_parser, load_config
from common.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from models.islr import head_similarity
from pipelines.auxiliary_labels import write_relabel
from pipelines.dictionary import read_dictionary, read_dictionary_manifest, read_dictionary_table
from pipelines.islr_batches import ISLRCollate
from pipelines.shards import DatasetDir, shard_uris
from pipelines.sign_mapping import SignMapping, class_scores, instance_scores, mapping_accuracy, mapping_table, pairs_figure, relabel
from pipelines.video_collate import predecode_row
from training.checkpoint import ISLRCheckpoint, load_islr
from training.cli import LOG_FORMAT
from training.distributed import autocast
from training.ray_cluster import ActorResources, storage_path

log = logging.getLogger("map_signs")


class ResourcesSection(ActorResources):
    """Ray resources (actors score clips in parallel); they never change the output."""

    batch_size: int = Field(32, ge=1)  # clips per model forward


class MappingConfig(StrictModel):
    name: str  # output folder under out_dir
    out_dir: str = "outputs/mapping"
    checkpoint: str  # ISLR checkpoint or run directory (-> its best checkpoint) with heads for both languages
    primary_dictionary: str  # the primary language's dictionary (its clips illustrate the pairs)
    auxiliary_dictionary: str  # the auxiliary language's dictionary, whose signs are mapped
    splits: list[str] = ["train"]  # the auxiliary dictionary's splits whose clips are scored
    strategy: Literal["class", "instance", "weights"] = "class"
    threshold: float = Field(0.5, ge=0.0, le=1.0)  # mapped when confidence >= threshold; 1.0: nothing mapped
    annotations: str | None = None  # the auxiliary shards (a jobs/preprocess.py dataset folder); None: the dictionary's source
    annotation_splits: list[str] = ["train"]
    relabel_split: str = "train"  # the split of the relabel files (what the recognition recipe's auxiliary corpus reads)
    sweep_thresholds: list[Annotated[float, Field(ge=0.0, le=1.0)]] = []  # also write relabelled_t<threshold>.jsonl for each (the threshold sweep's inputs)
    truth: str | None = None  # a synthetic corpus folder (its mapping.json: the true pairs); None: no accuracy
    figure_pairs: int = Field(8, ge=0)
    figure_frames: int = Field(4, ge=1)
    ray_address: str | None = None
    resources: ResourcesSection = ResourcesSection()


def resolved_paths(cfg: MappingConfig) -> MappingConfig:
    """Relative paths made absolute (training.ray_cluster.storage_path: under $SIGNBRIDGE_STORAGE when set)."""
    cfg = cfg.model_copy(deep=True)
    for key in ("out_dir", "checkpoint", "primary_dictionary", "auxiliary_dictionary", "annotations", "truth"):
        if getattr(cfg, key) is not None:
            setattr(cfg, key, storage_path(getattr(cfg, key)))
    return cfg


def languages(cfg: MappingConfig, ck: ISLRCheckpoint) -> tuple[str, str]:
    """(primary, auxiliary): the two dictionaries' languages, each with a head in the checkpoint."""
    found = {}
    for role, path in (("primary", cfg.primary_dictionary), ("auxiliary", cfg.auxiliary_dictionary)):
        lang = read_dictionary_manifest(path).get("language")
        if lang not in ck.classes:
            raise ConfigError(f"checkpoint {ck.path}: no head for the {role} language {lang!r} of {path} (heads: "
                              f"{list(ck.classes)}); train the ISLR model with that dictionary (jobs/train_islr.py)")
        found[role] = lang
    if found["primary"] == found["auxiliary"]:
        raise ConfigError(f"primary_dictionary and auxiliary_dictionary are both of language {found['primary']!r}")
    return found["primary"], found["auxiliary"]


# ---- scores: the primary head's softmax over the auxiliary clips (Ray Data), or the two heads' weights -----------


class ClipScorer:
    """Ray Data actor: holds the ISLR checkpoint; a batch of auxiliary dictionary clips -> their names
    and the primary head's softmax (B, V_primary)."""

    def __init__(self, checkpoint: str, primary: str, auxiliary: str, glosses: list[str], torch_threads: int | None):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if torch_threads and self.device.type == "cpu":
            torch.set_num_threads(torch_threads)
        self.ck = load_islr(checkpoint, map_location=self.device)
        self.ck.model.to(self.device)
        self.primary = primary
        # the collate checks each clip's language and gloss against `classes`: here every auxiliary gloss (no targets used)
        self.collate = ISLRCollate(self.ck.collate, train=False, classes={auxiliary: glosses}, clip_frames=self.ck.clip_frames)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = self.collate(batch)
        keypoints = b["keypoints"].to(self.device) if self.ck.model.config.uses_keypoints else None
        with torch.no_grad(), autocast(self.device):
            logits = self.ck.model(b["frames"].to(self.device), keypoints)[self.primary]
        return {"name": np.asarray(b["names"], dtype=object), "probs": torch.softmax(logits.float(), dim=-1).cpu().numpy()}


def score_clips(cfg: MappingConfig, ck: ISLRCheckpoint, primary: str, auxiliary: str, clips: list[dict]) -> np.ndarray:
    """The primary head's softmax (N, V_primary) for the auxiliary clips, in the order of `clips`."""
    import ray
    from ray.data import ActorPoolStrategy

    from training.ray_cluster import init_ray

    init_ray(cfg.ray_address)
    res = cfg.resources
    gpus = res.gpus_per_actor if ray.cluster_resources().get("GPU", 0) > 0 else 0
    columns = ["name", "language", "gloss", "num_frames", "height", "width", "frames"]
    columns += ["keypoints"] if ck.model.config.uses_keypoints else []
    ds = read_dictionary(cfg.auxiliary_dictionary, cfg.splits, columns).map_batches(
        ClipScorer, batch_size=res.batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=res.actors),
        num_cpus=res.cpus_per_actor, num_gpus=gpus, fn_constructor_kwargs={
            "checkpoint": str(ck.path), "primary": primary, "auxiliary": auxiliary,
            "glosses": sorted({c["gloss"] for c in clips}), "torch_threads": res.torch_threads})
    probs = {}
    with tqdm(total=len(clips), desc="scoring auxiliary clips", unit="clip") as bar:
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            probs.update(zip((str(n) for n in batch["name"]), batch["probs"]))
            bar.update(len(batch["name"]))
    return np.stack([probs[c["name"]] for c in clips]).astype(np.float64)


def sign_scores(cfg: MappingConfig, ck: ISLRCheckpoint, primary: str, auxiliary: str,
                clips: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The strategy's auxiliary signs (S,), their scores (S, V_primary) and clip counts (S,)."""
    if cfg.strategy == "weights":
        signs = list(ck.classes[auxiliary])
        with torch.no_grad():
            scores = head_similarity(ck.model, auxiliary, primary).numpy()
        counts = Counter(c["gloss"] for c in clips)
        return signs, scores, np.array([counts[s] for s in signs])
    if not clips:
        raise ValueError(f"{cfg.auxiliary_dictionary}: no clips in split(s) {cfg.splits}")
    probs = score_clips(cfg, ck, primary, auxiliary, clips)
    glosses = [c["gloss"] for c in clips]
    return class_scores(probs, glosses) if cfg.strategy == "class" else instance_scores(probs, glosses)


# ---- annotations, truth ---------------------------------------------------------------------------------------------


def read_sentences(cfg: MappingConfig) -> list[dict]:
    """The auxiliary corpus's sentences (name, split, gloss) of `annotation_splits`, from its shards."""
    uri = cfg.annotations or read_dictionary_manifest(cfg.auxiliary_dictionary).get("source")
    if not uri:
        raise ConfigError(f"{cfg.auxiliary_dictionary}: its manifest names no source shards; set annotations= "
                          "to the auxiliary shards (a jobs/preprocess.py dataset folder)")
    rows = []
    for path in shard_uris(uri, None, cfg.annotation_splits):
        directory = DatasetDir(path)
        with directory.fs.open_input_file(directory.path) as f:
            rows += pq.read_table(f, columns=["name", "split", "gloss"]).to_pylist()
    return rows


def true_pairs(cfg: MappingConfig, primary: str, auxiliary: str) -> dict[str, str] | None:
    """The true pairs {auxiliary gloss: primary gloss} of the synthetic corpus at `truth`."""
    if cfg.truth is None:
        return None
    path = Path(cfg.truth) / "mapping.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (truth= must be a synthetic corpus folder, jobs/synthesize.py)")
    truth = json.loads(path.read_text())
    if (truth.get("primary"), truth.get("auxiliary")) != (primary, auxiliary):
        raise ValueError(f"{path}: maps {truth.get('auxiliary')!r} -> {truth.get('primary')!r}, this mapping is "
                         f"{auxiliary!r} -> {primary!r}")
    return dict(truth["pairs"])


# ---- outputs --------------------------------------------------------------------------------------------------------


def table_csv(table: list[SignMapping]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["aux_gloss", "primary_gloss", "confidence", "mapped", "clips", "label"])
    for m in table:
        writer.writerow([m.aux_gloss, m.primary_gloss or "", f"{m.confidence:.6f}", m.mapped, m.clips, m.label])
    return out.getvalue()


def best_clips(root: str, splits: list[str], glosses: set[str]) -> dict[str, str]:
    """{gloss: name of its clip of highest alignment confidence} in a dictionary."""
    best: dict[str, tuple[float, str]] = {}
    for c in read_dictionary_table(root, splits, ["name", "gloss", "confidence"]).to_pylist():
        if c["gloss"] in glosses and (c["gloss"] not in best or c["confidence"] > best[c["gloss"]][0]):
            best[c["gloss"]] = (c["confidence"], c["name"])
    return {g: name for g, (_, name) in best.items()}


def clip_frames(root: str, splits: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """{clip name: its frames (T, H, W, 3) uint8 RGB}."""
    table = read_dictionary_table(root, splits, ["name", "frames", "num_frames", "height", "width"], names=names)
    return {r["name"]: predecode_row(r)["frames"] for r in table.to_pylist()}


def figure_pairs(cfg: MappingConfig, table: list[SignMapping], primary: str, auxiliary: str) -> list[dict]:
    """The `figure_pairs` most confident pairs (mapped or not) with a clip of each side."""
    ranked = sorted((m for m in table if m.primary_gloss is not None), key=lambda m: (-m.confidence, m.aux_gloss))
    primary_splits = list(read_dictionary_manifest(cfg.primary_dictionary)["splits"])
    aux_names = best_clips(cfg.auxiliary_dictionary, cfg.splits, {m.aux_gloss for m in ranked})
    primary_names = best_clips(cfg.primary_dictionary, primary_splits, {m.primary_gloss for m in ranked})
    chosen = [m for m in ranked if m.aux_gloss in aux_names and m.primary_gloss in primary_names][: cfg.figure_pairs]
    aux_frames = clip_frames(cfg.auxiliary_dictionary, cfg.splits, [aux_names[m.aux_gloss] for m in chosen])
    primary_frames = clip_frames(cfg.primary_dictionary, primary_splits, [primary_names[m.primary_gloss] for m in chosen])
    return [{"aux_gloss": m.aux_gloss, "primary_gloss": m.primary_gloss, "confidence": m.confidence, "mapped": m.mapped,
             "aux_language": auxiliary, "primary_language": primary, "aux_frames": aux_frames[aux_names[m.aux_gloss]],
             "primary_frames": primary_frames[primary_names[m.primary_gloss]]} for m in chosen]


def write_outputs(cfg: MappingConfig, out: Path, table: list[SignMapping], sentences: list[dict], primary: str,
                  auxiliary: str, checkpoint: Path) -> dict:
    """mapping.csv, mapping.json, annotations.jsonl, pairs.png. Returns the relabelling counts."""
    atomic_write_text(out / "mapping.csv", table_csv(table))
    atomic_write_json(out / "mapping.json", {
        "primary": primary, "auxiliary": auxiliary, "pairs": {m.aux_gloss: m.primary_gloss for m in table if m.mapped},
        "labels": {m.aux_gloss: m.label for m in table}, "strategy": cfg.strategy, "threshold": cfg.threshold,
        "checkpoint": str(checkpoint)})
    lines, tokens, mapped = [], 0, 0
    for s in sentences:
        labels = relabel(s["gloss"] or "", table, auxiliary)
        tokens += len(labels)
        mapped += sum(not g.startswith(f"{auxiliary}:") for g in labels)
        lines.append(json.dumps({"name": s["name"], "split": s["split"], "gloss": " ".join(labels),
                                 "source_gloss": s["gloss"]}, ensure_ascii=False))
    atomic_write_text(out / "annotations.jsonl", "".join(line + "\n" for line in lines))
    atomic_write_bytes(out / "pairs.png", pairs_figure(figure_pairs(cfg, table, primary, auxiliary), frames=cfg.figure_frames))
    return {"sentences": len(sentences), "gloss_tokens": tokens, "tokens_mapped": mapped}


def report(summary: dict, table: list[SignMapping]) -> str:
    """The table and the accuracy as plain text."""
    lines = [f"{'auxiliary':<16}{'primary':<16}{'confidence':>11}{'clips':>7}  mapped"]
    lines += [f"{m.aux_gloss:<16}{m.primary_gloss or '-':<16}{m.confidence:>11.3f}{m.clips:>7}  {'yes' if m.mapped else 'no'}"
              for m in table]
    lines.append(f"{summary['mapped_signs']} of {summary['signs']} {summary['auxiliary']} signs mapped to {summary['primary']} "
                 f"({summary['strategy']}, threshold {summary['threshold']})")
    acc = summary.get("accuracy")
    if acc:
        fmt = lambda v: "-" if v is None else f"{v:.1f} %"  # noqa: E731
        lines.append(f"truly shared signs: {acc['shared_signs']}, best primary sign right: {fmt(acc['shared_accuracy'])}, "
                     f"mapped right: {fmt(acc['shared_mapped_correct'])}; unshared signs mapped: {acc['unshared_mapped']} of "
                     f"{acc['unshared_signs']} ({fmt(acc['unshared_mapped_share'])})")
    return "\n".join(lines)


# ---- driver ---------------------------------------------------------------------------------------------------------


def run(cfg: MappingConfig) -> dict:
    """Map the auxiliary signs, write the outputs, print and return the summary."""
    t0 = time.time()
    cfg = resolved_paths(cfg)
    out = Path(cfg.out_dir) / cfg.name
    ck = load_islr(cfg.checkpoint)
    primary, auxiliary = languages(cfg, ck)
    clips = read_dictionary_table(cfg.auxiliary_dictionary, cfg.splits, ["name", "gloss"]).to_pylist()
    sentences = read_sentences(cfg)
    log.info("%s -> %s: %d clips of %s, %d sentences, strategy %s, threshold %s", auxiliary, primary, len(clips),
             cfg.auxiliary_dictionary, len(sentences), cfg.strategy, cfg.threshold)
    signs, scores, counts = sign_scores(cfg, ck, primary, auxiliary, clips)
    others = {g: 0 for s in sentences for g in (s["gloss"] or "").split()} | dict(Counter(c["gloss"] for c in clips))
    table = mapping_table(signs, scores, counts, ck.classes[primary], threshold=cfg.threshold, language=auxiliary,
                          other_signs=others)
    truth = true_pairs(cfg, primary, auxiliary)
    relabelled = write_outputs(cfg, out, table, sentences, primary, auxiliary, ck.path)
    train = [s for s in sentences if s["split"] == cfg.relabel_split]
    if not train:
        raise ValueError(f"{cfg.annotations or cfg.auxiliary_dictionary}: no sentences of split {cfg.relabel_split!r} "
                         f"among annotation_splits {cfg.annotation_splits} to write the relabel files from")
    write_relabel(out / "relabelled.jsonl", {s["name"]: relabel(s["gloss"] or "", table, auxiliary) for s in train})
    for t in cfg.sweep_thresholds:
        at_t = mapping_table(signs, scores, counts, ck.classes[primary], threshold=t, language=auxiliary, other_signs=others)
        write_relabel(out / f"relabelled_t{t:.2f}.jsonl", {s["name"]: relabel(s["gloss"] or "", at_t, auxiliary) for s in train})
    summary = {"out_dir": str(out), "checkpoint": str(ck.path), "primary": primary, "auxiliary": auxiliary,
               "strategy": cfg.strategy, "threshold": cfg.threshold, "clips_scored": 0 if cfg.strategy == "weights" else len(clips),
               "signs": len(table), "mapped_signs": sum(m.mapped for m in table), **relabelled,
               "accuracy": mapping_accuracy(table, truth) if truth is not None else None, "wall_s": time.time() - t0}
    atomic_write_json(out / "summary.json", summary)
    print(report(summary, table))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = job_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    summary = run(load_config(MappingConfig, args.config, args.overrides))
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
