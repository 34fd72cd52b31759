"""Evaluate a trained checkpoint on any split or annotation file. One sub-task per stage:

    python jobs/evaluate.py --task g2t --checkpoint RUN_DIR_OR_CHECKPOINT [--split dev]
        [--annotations FILE [--format slrt_pickle|phoenix2014t_csv]] [--glosses PREDICTED.tsv]
        [--num-beams 5 --length-penalty 1.0 --max-length 100] [--out DIR]

g2t (Gloss2Text): translate the split's glosses — or, with `--glosses`, predicted glosses
(`<name>\\t<glosses>` per line: Sign2Gloss2Text) — and score BLEU-1..4 / ROUGE-L against the
texts. Writes `hypotheses.txt`, `references.txt`, `translations.tsv` (name, glosses, hypothesis,
reference) and `scores.json` into `--out` (default `<run_dir>/eval_<split>`), and prints the
scores as one JSON line. A run directory resolves to its best checkpoint (`best_checkpoint.json`).

    python jobs/evaluate.py --task s2g --checkpoint RUN_DIR_OR_CHECKPOINT [--split dev]
        [--shards ROOT [--dataset NAME]] [--beam-width 5] [--head auto|rgb|keypoint|fuse|ensemble]
        [--batch-size 4] [--limit N] [--out DIR]

s2g (Sign2Gloss): decode a preprocessed split (Parquet shards; default: the run's shards) with a
recognition checkpoint (jobs/train_recognition.py), every head with CTC beam search, and score the
WER (sclite costs, after the corpus' gloss clean-up) of each head. The reported head is the one the
checkpoint was selected with on dev (`dev_head`; `--head` overrides). Writes `hypotheses.tsv`
(`<name>\t<glosses>` of the reported head, as decoded: the input of `--task g2t --glosses`),
`hypotheses_<head>.tsv` for every head, `references.tsv` and `scores.json` into `--out` (default
`<checkpoint's run dir>/eval_<split>`).

Tasks register in `TASKS` (name -> function(argv) -> summary dict).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("evaluate")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory (with `model/`), or a run directory -> its best checkpoint."""
    path = Path(path)
    if (path / "model").is_dir():
        return path
    best = path / "best_checkpoint.json"
    if best.exists():
        return Path(json.loads(best.read_text())["best_checkpoint"])
    raise FileNotFoundError(f"{path}: neither a checkpoint (no model/) nor a run directory (no best_checkpoint.json)")


def evaluate_g2t(
    checkpoint: str | Path,
    *,
    split: str | None = None,
    annotations: str | Path | None = None,
    corpus_format: str | None = None,
    glosses_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
) -> dict:
    """Decode and score one split with a Gloss2Text checkpoint; see the module docstring."""
    import torch

    from jobs.config import load_config
    from jobs.train_translation import TranslationConfig, decode_examples, score_texts
    from models.translation import GlossToText
    from pipelines.corpora import infer_split, read_corpus
    from pipelines.text_tokenizer import load_text_tokenizer, scoring_form
    from pipelines.translation_data import EncodingStats, encode_examples, normalize_glosses, read_gloss_predictions
    from pipelines.vocabulary import GlossVocabulary

    ckpt = resolve_checkpoint(checkpoint)
    cfg = load_config(TranslationConfig, ckpt / "config.yaml")
    corpus = cfg.data.corpus
    if annotations is not None:
        split = split or _split_of(annotations, infer_split)
        corpus = corpus.model_copy(update={"files": {split: str(annotations)}, "format": corpus_format or corpus.format})
    split = split or cfg.data.dev_split
    samples = read_corpus(corpus, split)
    samples = samples[:limit] if limit else samples
    missing = [s.name for s in samples if not s.text]
    if missing:
        raise ValueError(f"{corpus.annotation_file(split)}: {len(missing)} sample(s) have no text to score against, e.g. {missing[:3]}")
    if glosses_file is not None:
        samples = read_gloss_predictions(glosses_file, samples)
    samples = normalize_glosses(samples, cfg.data.lowercase_glosses)

    tokenizer = load_text_tokenizer(ckpt / "tokenizer")
    vocab = GlossVocabulary.load(ckpt / "gloss_vocab.json")
    stats = EncodingStats()
    examples = encode_examples(samples, vocab, tokenizer, max_source_length=cfg.data.max_source_length,
                               max_target_length=cfg.data.max_target_length, stats=stats)
    if stats.unknown_gloss_tokens:
        log.warning("%d gloss token(s) (%d types) unseen in training -> <unk>, e.g. %s", stats.unknown_gloss_tokens,
                    len(stats.unknown_glosses), [g for g, _ in stats.unknown_glosses.most_common(5)])
    if stats.truncated_sources:
        log.warning("%d gloss sequence(s) truncated to %d glosses", stats.truncated_sources, cfg.data.max_source_length)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = GlossToText.load(ckpt / "model", map_location=device).to(device).eval()
    decode = {
        "num_beams": num_beams if num_beams is not None else cfg.decode.num_beams,
        "length_penalty": length_penalty if length_penalty is not None else cfg.decode.length_penalty,
        "max_length": max_length if max_length is not None else cfg.decode.max_length,
        "batch_size": batch_size if batch_size is not None else cfg.decode.batch_size,
    }
    t0 = time.time()
    with torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _null():
        hyps = decode_examples(model, examples, tokenizer, device=device, **decode)
    decode_s = time.time() - t0
    level = cfg.scoring_level()
    refs = [s.text for s in samples]
    scores = score_texts(hyps, refs, level)

    out = Path(out_dir) if out_dir is not None else ckpt.parent / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "hypotheses.txt", "".join(scoring_form(h, level) + "\n" for h in hyps))
    _write(out / "references.txt", "".join(scoring_form(r, level) + "\n" for r in refs))
    _write(out / "translations.tsv", "name\tglosses\thypothesis\treference\n" + "".join(
        f"{s.name}\t{s.gloss_string}\t{scoring_form(h, level)}\t{scoring_form(s.text, level)}\n" for s, h in zip(samples, hyps)))
    summary = {
        "task": "g2t",
        "checkpoint": str(ckpt),
        "annotations": str(corpus.annotation_file(split)),
        "split": split,
        "glosses": str(glosses_file) if glosses_file else "reference",
        "sentences": len(samples),
        "level": level,
        "scores": scores,
        "decode": decode,
        "decode_sentences_per_s": len(samples) / max(1e-9, decode_s),
        "encoding": stats.summary(),
        "out_dir": str(out),
    }
    _write(out / "scores.json", json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def _split_of(path, infer_split) -> str:
    try:
        return infer_split(path)
    except ValueError:
        return "eval"


def _null():
    from contextlib import nullcontext

    return nullcontext()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def g2t_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task g2t", description="Gloss2Text BLEU-1..4 / ROUGE-L")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory, or a run directory (best checkpoint)")
    p.add_argument("--split", help="split name (default: the run's dev split, or inferred from --annotations)")
    p.add_argument("--annotations", help="annotation file to evaluate instead of the run's corpus file for --split")
    p.add_argument("--format", dest="corpus_format", choices=["phoenix2014t_csv", "slrt_pickle", "synthetic"],
                   help="format of --annotations (default: the run corpus' format)")
    p.add_argument("--glosses", dest="glosses_file", help="predicted glosses, '<name>\\t<glosses>' per line (Sign2Gloss2Text)")
    p.add_argument("--out", dest="out_dir")
    p.add_argument("--num-beams", type=int)
    p.add_argument("--length-penalty", type=float)
    p.add_argument("--max-length", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="first N samples only")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = vars(p.parse_args(argv))
    threads = args.pop("threads")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return evaluate_g2t(**args)


def evaluate_s2g(
    checkpoint: str | Path,
    *,
    split: str | None = None,
    shards: str | None = None,
    dataset: str | None = None,
    out_dir: str | Path | None = None,
    beam_width: int | None = None,
    head: str | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
) -> dict:
    """Decode and score one split with a Sign2Gloss checkpoint; see the module docstring."""
    import torch

    from jobs.config import load_config
    from jobs.train_recognition import (
        RecognitionCollate,
        RecognitionConfig,
        choose_head,
        decode_split,
        ensure_ray,
        eval_batches,
        load_model,
        score_heads,
        shard_columns,
    )
    from pipelines.shards import read_manifest, read_shards
    from pipelines.vocabulary import GlossVocabulary

    ckpt = resolve_checkpoint(checkpoint)
    cfg = load_config(RecognitionConfig, ckpt / "config.yaml")
    split = split or cfg.data.dev_split
    if shards is not None:
        root, name = shards, dataset
    else:
        root, name = cfg.data.shards, dataset if dataset is not None else cfg.data.dataset
    manifest = read_manifest(root, name)
    vocab = GlossVocabulary.load(ckpt / "gloss_vocab.json")
    heads = cfg.head_names()
    ckpt_metrics = json.loads((ckpt / "metrics.json").read_text()) if (ckpt / "metrics.json").exists() else {}
    if head in (None, "auto"):
        head = ckpt_metrics.get("dev_head") or choose_head({h: ckpt_metrics.get(f"dev_wer_{h}", 0.0) for h in heads}, cfg.train.select_head)
    if head not in heads:
        raise ValueError(f"head {head!r}: the checkpoint's model has heads {heads}")
    beam = beam_width if beam_width is not None else cfg.decode.beam_width
    bs = batch_size if batch_size is not None else cfg.decode.batch_size

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(ckpt / "model", map_location=device).to(device).eval()
    uses_kp = "keypoint" in model.config.streams
    ensure_ray()
    ds = read_shards(root, name, split, columns=shard_columns(uses_kp))
    if limit:
        ds = ds.limit(limit)
    collate = RecognitionCollate(cfg.data.collate, train=False, glosses=vocab.glosses, frame_stride=cfg.data.frame_stride)
    t0 = time.time()
    dec = decode_split(model, eval_batches(ds.iter_batches(batch_format="numpy", batch_size=bs), collate, bs), heads,
                       beam_width=beam, device=device, uses_keypoints=uses_kp, vocab=vocab)
    decode_s = time.time() - t0
    order = sorted(range(len(dec["names"])), key=lambda i: dec["names"][i])
    names = [dec["names"][i] for i in order]
    refs = [dec["refs"][i] for i in order]
    hyps = {h: [dec["hyps"][h][i] for i in order] for h in heads}
    scores = score_heads(refs, hyps, manifest["corpus"])

    out = Path(out_dir) if out_dir is not None else ckpt.parent / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    for h in heads:
        _write(out / f"hypotheses_{h}.tsv", "".join(f"{n}\t{' '.join(g)}\n" for n, g in zip(names, hyps[h])))
    _write(out / "hypotheses.tsv", "".join(f"{n}\t{' '.join(g)}\n" for n, g in zip(names, hyps[head])))
    _write(out / "references.tsv", "".join(f"{n}\t{r}\n" for n, r in zip(names, refs)))
    summary = {
        "task": "s2g",
        "checkpoint": str(ckpt),
        "shards": root,
        "dataset": name,
        "corpus": manifest["corpus"],
        "split": split,
        "sentences": len(names),
        "head": head,
        "beam_width": beam,
        "wer": {h: scores[h]["wer"] for h in heads},
        "details": scores,
        "empty_hypotheses": sum(1 for g in hyps[head] if not g),
        "infeasible": dec["infeasible"],
        "unknown_reference_glosses": dec["unknown_glosses"],
        "decode_clips_per_s": len(names) / max(1e-9, decode_s),
        "out_dir": str(out),
    }
    _write(out / "scores.json", json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def s2g_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task s2g", description="Sign2Gloss WER per head")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory, or a run directory (best checkpoint)")
    p.add_argument("--split", help="split name (default: the run's dev split)")
    p.add_argument("--shards", help="root of preprocessed datasets (default: the run's data.shards)")
    p.add_argument("--dataset", help="dataset folder under --shards (default: the run's data.dataset)")
    p.add_argument("--out", dest="out_dir")
    p.add_argument("--beam-width", type=int, help="CTC beam width (default: the run's decode.beam_width; 1 = greedy)")
    p.add_argument("--head", choices=["auto", "rgb", "keypoint", "fuse", "ensemble"],
                   help="head to report (default: the head chosen on dev for the checkpoint)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="first N videos only")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = vars(p.parse_args(argv))
    threads = args.pop("threads")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return evaluate_s2g(**args)


TASKS: dict[str, Callable[[list[str]], dict]] = {"g2t": g2t_main, "s2g": s2g_main}


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pre = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    pre.add_argument("--task", required=True, choices=sorted(TASKS))
    known, rest = pre.parse_known_args(argv)
    summary = TASKS[known.task](rest)
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
