"""Decoding and scoring a split, as every recipe's dev evaluation and `jobs/evaluate.py` do it.

Sign2Gloss: run the recognition model over collated batches, decode every head with CTC (greedy
or prefix beam search), score corpus WER (sclite costs) after the corpus' gloss clean-up.
Gloss2Text: translate encoded examples in length-sorted batches with `generate`, score BLEU-1..4
and ROUGE-L at the corpus' level (words or characters).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

import torch

from common.files import atomic_write_json, atomic_write_text
from pipelines.vocabulary import GlossVocabulary
from training.distributed import autocast

log = logging.getLogger(__name__)

# ---- Sign2Gloss ------------------------------------------------------------------------------------


def run_model(model, batch: dict, device: torch.device, uses_keypoints: bool) -> dict:
    """A recognition model's forward on a collated batch (frames, lengths, keypoints if used)."""
    return model(batch["frames"].to(device, non_blocking=True), batch["frame_lengths"].to(device),
                 batch["keypoints"].to(device, non_blocking=True) if uses_keypoints else None)


def decode_heads(outputs: dict, heads: list[str], beam_width: int, num_classes: int | None = None) -> dict[str, list[list[int]]]:
    """Gloss ids per clip for every head: greedy (beam_width 1) or CTC prefix beam search.
    num_classes: decode over the first classes only (blank and the primary glosses of a mixed-training
    model, whose auxiliary-only classes follow them); None: all."""
    from models.ctc import beam_search_decode, greedy_decode

    result = {}
    for head in heads:
        lp = outputs["log_probs"][head]
        if num_classes is not None:
            lp = lp[..., :num_classes]
        if beam_width > 1:
            result[head] = beam_search_decode(lp, outputs["lengths"], beam_width=beam_width)
        else:
            result[head] = greedy_decode(lp, outputs["lengths"])
    return result


def decode_split(model, batches: Iterable[dict], heads: list[str], *, beam_width: int, device: torch.device,
                 uses_keypoints: bool, vocab: GlossVocabulary, num_classes: int | None = None) -> dict:
    """Decode every head on the batches (over the first `num_classes` classes, see `decode_heads`).
    Returns names, references (as annotated), hypotheses per head (gloss lists), count of infeasible
    samples (label longer than the output allows), unknown reference glosses."""
    from models.ctc import min_ctc_length

    model.eval()
    names, refs, hyps = [], [], {h: [] for h in heads}
    infeasible = unknown = 0
    with torch.no_grad():
        for batch in batches:
            with autocast(device):
                out = run_model(model, batch, device, uses_keypoints)
            decoded = decode_heads(out, heads, beam_width, num_classes)
            for h in heads:
                hyps[h].extend(vocab.decode(ids) for ids in decoded[h])
            names.extend(batch["names"])
            refs.extend(batch["glosses"])
            infeasible += int((min_ctc_length(batch["labels"], batch["label_lengths"]) > out["lengths"].cpu()).sum())
            unknown += int(batch["unknown_glosses"])
    return {"names": names, "refs": refs, "hyps": hyps, "infeasible": infeasible, "unknown_glosses": unknown}


def score_heads(refs: list[str], hyps: dict[str, list[list[str]]], corpus: str) -> dict[str, dict]:
    """Corpus WER (sclite costs, percent) and its error counts per head, after the corpus' gloss clean-up."""
    from metrics.gloss_cleanup import cleanup_for
    from metrics.wer import corpus_wer

    clean = cleanup_for(corpus)
    clean_refs = [clean(r) for r in refs]
    out = {}
    for head, hs in hyps.items():
        res = corpus_wer(clean_refs, [clean(list(h)) for h in hs])
        out[head] = {"wer": res.wer, "sub": res.substitutions, "del": res.deletions, "ins": res.insertions,
                     "ref_tokens": res.ref_tokens, "sentences": res.num_sentences}
    return out


def choose_head(wers: dict[str, float], select: str) -> str:
    """`select`, or with "auto" the head of lowest WER (ties by name)."""
    if select != "auto":
        return select
    return min(wers, key=lambda h: (wers[h], h))


def checkpoint_head(ck) -> str:
    """The head a Sign2Gloss checkpoint (training.checkpoint.Sign2GlossCheckpoint) was selected with
    on dev (`dev_head` of its metrics), else its run's `train.select_head` over the dev WERs it records."""
    heads = ck.model.config.decodable_heads
    select = ck.run_config.get("train", {}).get("select_head", "auto")
    return ck.metrics.get("dev_head") or choose_head({h: ck.metrics.get(f"dev_wer_{h}", 0.0) for h in heads}, select)


# ---- Gloss2Text --------------------------------------------------------------------------------------


def decode_examples(model, examples, tokenizer, *, num_beams: int, length_penalty: float, max_length: int,
                    batch_size: int, device: torch.device) -> list[str]:
    """Translate encoded examples (any order; batched by source length) -> texts in input order."""
    from pipelines.translation_data import collate

    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].gloss_ids))
    out: list[str] = [""] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([examples[i] for i in idx], tgt_lang_id=model.tgt_lang_id)
        ids = model.translate(batch["gloss_ids"].to(device), batch["gloss_lengths"].to(device), num_beams=num_beams,
                              length_penalty=length_penalty, max_length=max_length)
        for i, seq in zip(idx, ids):
            out[i] = tokenizer.decode(seq)
    return out


def score_texts(hyps: list[str], refs: list[str], level: str) -> dict[str, float]:
    """BLEU-1..4 and ROUGE-L (percent) of texts brought to their scoring form."""
    from metrics.translation import translation_scores
    from pipelines.text_tokenizer import scoring_form

    return translation_scores([scoring_form(h, level) for h in hyps], [scoring_form(r, level) for r in refs], level=level)


# ---- Sign2Text -----------------------------------------------------------------------------------------


def decode_sign2text(model, batches: Iterable[dict], tokenizer, vocab: GlossVocabulary, *, num_beams: int,
                     length_penalty: float, max_length: int, device: torch.device, gloss_beam_width: int = 1) -> dict:
    """Translate collated Sign2Text batches (models.sign2text.SignToText.visual's inputs) with beam
    search, and decode the recognizer's glosses (its decode head, CTC greedy or beam). Returns names,
    texts (references), hypotheses (texts), glosses (references, as annotated) and gloss hypotheses."""
    model.eval()
    out = {"names": [], "texts": [], "hyps": [], "glosses": [], "gloss_hyps": []}
    with torch.no_grad():
        for batch in batches:
            on_device = move_to(batch, device)
            with autocast(device):
                ids, visual = model.translate(on_device, num_beams=num_beams, length_penalty=length_penalty,
                                              max_length=max_length)
            head = visual["decode_head"]
            decoded = decode_heads(visual, [head], gloss_beam_width)[head]
            out["hyps"].extend(tokenizer.decode(x) for x in ids)
            out["gloss_hyps"].extend(vocab.decode(x) for x in decoded)
            out["names"].extend(batch["names"])
            out["texts"].extend(batch["texts"])
            out["glosses"].extend(batch["glosses"])
    return out


def move_to(value, device: torch.device):
    """Tensors (also inside dicts) moved to `device`; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: move_to(v, device) for k, v in value.items()}
    return value

def translate_samples(ck, samples: list, *, device: torch.device, num_beams: int | None = None,
                      length_penalty: float | None = None, max_length: int | None = None,
                      batch_size: int | None = None) -> tuple[list[str], dict]:
    """Translate the glosses of `samples` (pipelines.records.Sample, as annotated or recognised) with a
    loaded Gloss2Text checkpoint (training.checkpoint.load_gloss2text); decoding settings default to
    the run's. Returns the texts in input order and {"decode": settings, "decode_sentences_per_s",
    "encoding": what encoding changed}."""
    from pipelines.translation_data import EncodingStats, cover_unseen_glosses, encode_examples, normalize_glosses

    run_decode = ck.run_config.get("decode", {})
    stats = EncodingStats()
    samples = normalize_glosses(samples, ck.text["lowercase_glosses"])
    vocab, unseen = ck.vocab, []
    if ck.text.get("unseen_glosses", "spelling") == "spelling":
        vocab, unseen = cover_unseen_glosses(samples, ck.vocab, ck.tokenizer)
    ck.model.set_unseen_glosses(unseen)
    examples = encode_examples(samples, vocab, ck.tokenizer, max_source_length=ck.text["max_source_length"],
                               max_target_length=ck.text["max_target_length"], stats=stats)
    if unseen:
        log.info("%d gloss type(s) unseen in training embedded from their spelling, e.g. %s", len(unseen),
                 vocab.glosses[len(ck.vocab.glosses):][:5])
    if stats.unknown_gloss_tokens:
        log.warning("%d gloss token(s) (%d types) unseen in training -> <unk>, e.g. %s", stats.unknown_gloss_tokens,
                    len(stats.unknown_glosses), [g for g, _ in stats.unknown_glosses.most_common(5)])
    if stats.truncated_sources:
        log.warning("%d gloss sequence(s) truncated to %d glosses", stats.truncated_sources, ck.text["max_source_length"])
    decode = {
        "num_beams": num_beams if num_beams is not None else run_decode.get("num_beams", 5),
        "length_penalty": length_penalty if length_penalty is not None else run_decode.get("length_penalty", 1.0),
        "max_length": max_length if max_length is not None else run_decode.get("max_length", 100),
        "batch_size": batch_size if batch_size is not None else run_decode.get("batch_size", 64),
    }
    t0 = time.time()
    with autocast(device):
        hyps = decode_examples(ck.model.to(device), examples, ck.tokenizer, device=device, **decode)
    return hyps, {"decode": decode, "decode_sentences_per_s": len(samples) / max(1e-9, time.time() - t0),
                  "encoding": {**stats.summary(), "glosses_embedded_from_spelling": len(unseen)}}


def write_translations(out: Path, samples: list, hyps: list[str], level: str) -> None:
    """`hypotheses.txt`, `references.txt` (scoring form, one line per sample) and `translations.tsv`
    (name, glosses translated, hypothesis, reference) into `out`."""
    from pipelines.text_tokenizer import scoring_form

    atomic_write_text(out / "hypotheses.txt", "".join(scoring_form(h, level) + "\n" for h in hyps))
    atomic_write_text(out / "references.txt", "".join(scoring_form(s.text, level) + "\n" for s in samples))
    atomic_write_text(out / "translations.tsv", "name\tglosses\thypothesis\treference\n" + "".join(
        f"{s.name}\t{s.gloss_string}\t{scoring_form(h, level)}\t{scoring_form(s.text, level)}\n" for s, h in zip(samples, hyps)))


# ---- a checkpoint on a whole split (jobs/evaluate.py and the recipes' final evaluation) ----------------


def run_split(ck, split: str | None, shards: str | None, dataset: str | None) -> tuple[str, str, str | None, dict]:
    """The split, shards root, dataset and its manifest to evaluate a checkpoint on: those given, else
    its run's (`data.dev_split`, `data.shards`, `data.dataset`)."""
    from pipelines.shards import read_manifest

    data = ck.run_config.get("data", {})
    split = split or data.get("dev_split", "dev")
    root, name = (shards, dataset) if shards is not None else (data.get("shards"), dataset or data.get("dataset"))
    if root is None:
        raise ValueError(f"{ck.path}: the checkpoint names no shards (no config.yaml); pass the shards' root")
    return split, root, name, read_manifest(root, name)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_sign2gloss(checkpoint: str | Path, *, split: str | None = None, shards: str | None = None,
                        dataset: str | None = None, out_dir: str | Path | None = None, beam_width: int | None = None,
                        head: str | None = None, batch_size: int | None = None, limit: int | None = None) -> dict:
    """Decode a preprocessed split with a Sign2Gloss checkpoint (or a run directory's best one),
    every head with CTC beam search, and score each head's WER. Defaults come from the run: its
    shards, dev split, `decode.beam_width`, and the head the checkpoint was selected with on dev.
    Writes hypotheses (`hypotheses.tsv` of the reported head, `hypotheses_<head>.tsv`),
    `references.tsv` and `scores.json` into `out_dir` (default `<run dir>/eval_<split>`)."""
    from pipelines.recognition_batches import RecognitionCollate, eval_batches, shard_columns
    from pipelines.shards import read_shards
    from training.checkpoint import load_sign2gloss
    from training.ray_cluster import init_ray

    device = _device()
    ck = load_sign2gloss(checkpoint, map_location=device)
    run_decode = ck.run_config.get("decode", {})
    split, root, name, manifest = run_split(ck, split, shards, dataset)
    heads = ck.model.config.decodable_heads
    if head in (None, "auto"):
        head = checkpoint_head(ck)
    if head not in heads:
        raise ValueError(f"head {head!r}: the checkpoint's model has heads {heads}")
    beam = beam_width if beam_width is not None else run_decode.get("beam_width", 5)
    bs = batch_size if batch_size is not None else run_decode.get("batch_size", 4)

    model = ck.model.to(device)
    init_ray(job_priority=True)
    ds = read_shards(root, name, split, columns=shard_columns(ck.uses_keypoints))
    if limit:
        ds = ds.limit(limit)
    collate = RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses, frame_stride=ck.frame_stride)
    t0 = time.time()
    dec = decode_split(model, eval_batches(ds.iter_batches(batch_format="numpy", batch_size=bs), collate, bs), heads,
                       beam_width=beam, device=device, uses_keypoints=ck.uses_keypoints, vocab=ck.vocab,
                       num_classes=ck.decode_classes)
    decode_s = time.time() - t0
    order = sorted(range(len(dec["names"])), key=lambda i: dec["names"][i])
    names = [dec["names"][i] for i in order]
    refs = [dec["refs"][i] for i in order]
    hyps = {h: [dec["hyps"][h][i] for i in order] for h in heads}
    scores = score_heads(refs, hyps, manifest["corpus"])

    out = Path(out_dir) if out_dir is not None else ck.path.parent / f"eval_{split}"
    for h in heads:
        atomic_write_text(out / f"hypotheses_{h}.tsv", "".join(f"{n}\t{' '.join(g)}\n" for n, g in zip(names, hyps[h])))
    atomic_write_text(out / "hypotheses.tsv", "".join(f"{n}\t{' '.join(g)}\n" for n, g in zip(names, hyps[head])))
    atomic_write_text(out / "references.tsv", "".join(f"{n}\t{r}\n" for n, r in zip(names, refs)))
    summary = {
        "task": "s2g", "checkpoint": str(ck.path), "shards": root, "dataset": name, "corpus": manifest["corpus"],
        "split": split, "sentences": len(names), "head": head, "beam_width": beam, "decode_classes": ck.decode_classes,
        "wer": {h: scores[h]["wer"] for h in heads},
        "details": scores,
        "empty_hypotheses": sum(1 for g in hyps[head] if not g),
        "infeasible": dec["infeasible"],
        "unknown_reference_glosses": dec["unknown_glosses"],
        "decode_clips_per_s": len(names) / max(1e-9, decode_s),
        "out_dir": str(out),
    }
    atomic_write_json(out / "scores.json", summary)
    return summary


def evaluate_gloss2text(checkpoint: str | Path | list[str | Path], *, split: str | None = None, annotations: str | Path | None = None,
                        corpus_format: str | None = None, glosses_file: str | Path | None = None,
                        out_dir: str | Path | None = None, num_beams: int | None = None, length_penalty: float | None = None,
                        max_length: int | None = None, batch_size: int | None = None, limit: int | None = None) -> dict:
    """Translate a split's glosses — or, with `glosses_file`, predicted glosses (`<name>\\t<glosses>`
    per line: Sign2Gloss2Text) — with a Gloss2Text checkpoint and score BLEU-1..4 / ROUGE-L against
    the texts. The split comes from the run's corpus, or from `annotations` (any annotation file).
    Several checkpoints (a list of more than one) decode as an ensemble
    (`training.checkpoint.load_gloss2text_ensemble`; corpus and defaults from the first).
    Writes `hypotheses.txt`, `references.txt`, `translations.tsv` and `scores.json` into `out_dir`
    (default `<run dir>/eval_<split>`, `<first run dir>/eval_<split>_ensemble<N>` for N checkpoints)."""
    from metrics.translation import level_for
    from pipelines.corpora import CorpusConfig, infer_split, read_corpus
    from pipelines.translation_data import normalize_glosses, read_gloss_predictions
    from training.checkpoint import load_gloss2text, load_gloss2text_ensemble, resolve_checkpoint

    device = _device()
    members = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if len(members) == 1:
        ck = load_gloss2text(members[0], map_location=device)
    else:
        ck = load_gloss2text_ensemble(members, map_location=device)
    data = ck.run_config.get("data", {})
    if "corpus" not in data:
        raise ValueError(f"{ck.path}: the checkpoint has no run config (config.yaml) naming its corpus")
    corpus = CorpusConfig.model_validate(data["corpus"])
    if annotations is not None:
        try:
            split = split or infer_split(annotations)
        except ValueError:
            split = split or "eval"
        corpus = corpus.model_copy(update={"files": {split: str(annotations)}, "format": corpus_format or corpus.format})
    split = split or data.get("dev_split", "dev")
    samples = read_corpus(corpus, split)
    samples = samples[:limit] if limit else samples
    missing = [s.name for s in samples if not s.text]
    if missing:
        raise ValueError(f"{corpus.annotation_file(split)}: {len(missing)} sample(s) have no text to score against, e.g. {missing[:3]}")
    if glosses_file is not None:
        samples = read_gloss_predictions(glosses_file, samples)
    samples = normalize_glosses(samples, ck.text["lowercase_glosses"])

    hyps, decoding = translate_samples(ck, samples, device=device, num_beams=num_beams, length_penalty=length_penalty,
                                       max_length=max_length, batch_size=batch_size)
    level = data.get("level") or level_for(corpus.name)
    scores = score_texts(hyps, [s.text for s in samples], level)
    ensemble = f"_ensemble{len(members)}" if len(members) > 1 else ""
    out = Path(out_dir) if out_dir is not None else ck.path.parent / f"eval_{split}{ensemble}"
    write_translations(out, samples, hyps, level)
    summary = {
        "task": "g2t", "checkpoint": str(ck.path) if len(members) == 1 else [str(resolve_checkpoint(m)) for m in members],
        "annotations": str(corpus.annotation_file(split)), "split": split,
        "glosses": str(glosses_file) if glosses_file else "reference", "sentences": len(samples), "level": level,
        "scores": scores, **decoding, "out_dir": str(out),
    }
    atomic_write_json(out / "scores.json", summary)
    return summary


def evaluate_sign2gloss2text(sign2gloss: str | Path, gloss2text: str | Path, *, split: str = "dev", shards: str | None = None,
                             dataset: str | None = None, out_dir: str | Path | None = None, beam_width: int | None = None,
                             head: str | None = None, num_beams: int | None = None, length_penalty: float | None = None,
                             max_length: int | None = None, batch_size: int | None = None, limit: int | None = None) -> dict:
    """Sign2Gloss2Text, the cascade: recognise a preprocessed split with a Sign2Gloss checkpoint
    (`evaluate_sign2gloss`, with its defaults: the run's shards and the head chosen on dev), translate
    each video's recognised glosses with a Gloss2Text checkpoint, and score BLEU-1..4 / ROUGE-L
    against the texts the shards carry. A video recognised as no gloss at all gets an empty
    translation (counted as `empty_recognitions`). Writes `sign2gloss/` (the recognition's files),
    `hypotheses.txt`, `references.txt`, `translations.tsv` and `scores.json` into `out_dir` (default
    `<Sign2Gloss run dir>/eval_s2g2t_<split>`)."""
    from metrics.translation import level_for
    from pipelines.records import Sample
    from pipelines.shards import read_shards
    from pipelines.translation_data import normalize_glosses
    from training.checkpoint import load_gloss2text, resolve_checkpoint

    out = Path(out_dir) if out_dir is not None else resolve_checkpoint(sign2gloss).parent / f"eval_s2g2t_{split}"
    recognition = evaluate_sign2gloss(sign2gloss, split=split, shards=shards, dataset=dataset, out_dir=out / "sign2gloss",
                                      beam_width=beam_width, head=head, limit=limit)
    lines = (out / "sign2gloss" / "hypotheses.tsv").read_text(encoding="utf-8").splitlines()
    recognised = [(name, tuple(glosses.split())) for name, _, glosses in (line.partition("\t") for line in lines)]
    rows = read_shards(recognition["shards"], recognition["dataset"], split).select_columns(["name", "text"]).take_all()
    texts = {r["name"]: r["text"] for r in rows}
    missing = [name for name, _ in recognised if not texts.get(name)]
    if missing:
        raise ValueError(f"{recognition['shards']}/{recognition['dataset']} ({split}): {len(missing)} video(s) have no "
                         f"text to score against, e.g. {missing[:3]}")

    device = _device()
    ck = load_gloss2text(gloss2text, map_location=device)
    samples = normalize_glosses([Sample(name=n, split=split, signer="", glosses=g, text=texts[n], num_frames=None, video=None,
                                        language="") for n, g in recognised], ck.text["lowercase_glosses"])
    translated = [s for s in samples if s.glosses]
    if len(translated) < len(samples):
        log.warning("%d of %d video(s) recognised as no gloss: empty translations", len(samples) - len(translated), len(samples))
    texts_out, decoding = translate_samples(ck, translated, device=device, num_beams=num_beams,
                                            length_penalty=length_penalty, max_length=max_length, batch_size=batch_size)
    by_name = dict(zip((s.name for s in translated), texts_out))
    hyps = [by_name.get(s.name, "") for s in samples]
    data = ck.run_config.get("data", {})
    level = data.get("level") or level_for(data["corpus"]["name"] if "corpus" in data else recognition["corpus"])
    write_translations(out, samples, hyps, level)
    summary = {
        "task": "s2g2t", "sign2gloss": recognition["checkpoint"], "gloss2text": str(ck.path), "shards": recognition["shards"],
        "dataset": recognition["dataset"], "split": split, "sentences": len(samples), "head": recognition["head"],
        "wer": recognition["wer"][recognition["head"]], "empty_recognitions": len(samples) - len(translated), "level": level,
        "scores": score_texts(hyps, [s.text for s in samples], level), **decoding, "out_dir": str(out),
    }
    atomic_write_json(out / "scores.json", summary)
    return summary


def evaluate_sign2text(checkpoint: str | Path, *, split: str | None = None, shards: str | None = None,
                       dataset: str | None = None, out_dir: str | Path | None = None, num_beams: int | None = None,
                       length_penalty: float | None = None, max_length: int | None = None, batch_size: int | None = None,
                       limit: int | None = None) -> dict:
    """Translate a preprocessed split (its frames and keypoints: the checkpoint alone, no feature
    cache) with a Sign2Text checkpoint (or a run directory's best one) and score BLEU-1..4 / ROUGE-L
    against the texts, and the recognizer's glosses (CTC greedy) by WER. Defaults come from the run:
    its shards, dev split and `decode` settings. Writes `translations.tsv` (name, hypothesis,
    reference), `hypotheses.txt`, `references.txt`, `glosses.tsv` and `scores.json` into `out_dir`
    (default `<run dir>/eval_<split>`)."""
    from metrics.translation import level_for
    from pipelines.recognition_batches import RecognitionCollate, eval_batches, shard_columns
    from pipelines.shards import read_shards
    from pipelines.sign2text_batches import Sign2TextCollate, TextTargets
    from pipelines.text_tokenizer import scoring_form
    from training.checkpoint import load_sign2text
    from training.ray_cluster import init_ray

    device = _device()
    ck = load_sign2text(checkpoint, map_location=device)
    data, run_decode = ck.run_config.get("data", {}), ck.run_config.get("decode", {})
    split, root, name, manifest = run_split(ck, split, shards, dataset)
    decode = {"num_beams": num_beams if num_beams is not None else run_decode.get("num_beams", 5),
              "length_penalty": length_penalty if length_penalty is not None else run_decode.get("length_penalty", 1.0),
              "max_length": max_length if max_length is not None else run_decode.get("max_length", 100)}
    bs = batch_size if batch_size is not None else run_decode.get("batch_size", 4)
    model = ck.model.to(device)
    init_ray(job_priority=True)
    ds = read_shards(root, name, split, columns=shard_columns(ck.uses_keypoints) + ["text"])
    if limit:
        ds = ds.limit(limit)
    targets = TextTargets(ck.tokenizer, ck.tokenizer.lang_id(ck.text["tgt_lang"]), ck.text["max_target_length"])
    collate = Sign2TextCollate(RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses, frame_stride=ck.frame_stride),
                               targets)
    t0 = time.time()
    dec = decode_sign2text(model, eval_batches(ds.iter_batches(batch_format="numpy", batch_size=bs), collate, bs), ck.tokenizer,
                           ck.vocab, device=device, **decode)
    decode_s = time.time() - t0
    order = sorted(range(len(dec["names"])), key=lambda i: dec["names"][i])
    names, refs, hyps = ([dec[k][i] for i in order] for k in ("names", "texts", "hyps"))
    level = data.get("level") or level_for(manifest["corpus"])
    scores = score_texts(hyps, refs, level)
    gloss_scores = score_heads([dec["glosses"][i] for i in order], {"gloss": [dec["gloss_hyps"][i] for i in order]},
                               manifest["corpus"])["gloss"]

    out = Path(out_dir) if out_dir is not None else ck.path.parent / f"eval_{split}"
    atomic_write_text(out / "hypotheses.txt", "".join(scoring_form(h, level) + "\n" for h in hyps))
    atomic_write_text(out / "references.txt", "".join(scoring_form(r, level) + "\n" for r in refs))
    atomic_write_text(out / "translations.tsv", "name\thypothesis\treference\n" + "".join(
        f"{n}\t{scoring_form(h, level)}\t{scoring_form(r, level)}\n" for n, h, r in zip(names, hyps, refs)))
    atomic_write_text(out / "glosses.tsv", "".join(f"{dec['names'][i]}\t{' '.join(dec['gloss_hyps'][i])}\n" for i in order))
    summary = {"task": "s2t", "checkpoint": str(ck.path), "shards": root, "dataset": name, "corpus": manifest["corpus"],
               "split": split, "sentences": len(names), "level": level, "scores": scores, "wer": gloss_scores["wer"],
               "decode": decode, "decode_clips_per_s": len(names) / max(1e-9, decode_s), "out_dir": str(out)}
    atomic_write_json(out / "scores.json", summary)
    return summary
