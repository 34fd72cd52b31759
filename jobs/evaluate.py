"""Evaluate a trained checkpoint on any split or annotation file. One sub-task per stage:

    python jobs/evaluate.py --task g2t --checkpoint RUN_DIR_OR_CHECKPOINT [MORE ...] [--split dev]
        [--annotations FILE [--format slrt_pickle|phoenix2014t_csv]] [--glosses PREDICTED.tsv]
        [--num-beams 5 --length-penalty 1.0 --max-length 100] [--out DIR]

g2t (Gloss2Text): translate the split's glosses — or, with `--glosses`, predicted glosses
(`<name>\\t<glosses>` per line: Sign2Gloss2Text) — and score BLEU-1..4 / ROUGE-L against the
texts. Writes `hypotheses.txt`, `references.txt`, `translations.tsv` (name, glosses, hypothesis,
reference) and `scores.json` into `--out` (default `<run_dir>/eval_<split>`), and prints the
scores as one JSON line. A run directory resolves to its best checkpoint (`best_checkpoint.json`).
Several checkpoints (e.g. seeds of one recipe, sharing vocabulary and tokenizer) decode as an
ensemble: beam search over the mean of their next-token probabilities (default `--out`:
`<first run dir>/eval_<split>_ensemble<N>`).

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

    python jobs/evaluate.py --task s2g2t --sign2gloss RUN_OR_CHECKPOINT --gloss2text RUN_OR_CHECKPOINT
        [--split dev] [--shards ROOT [--dataset NAME]] [--beam-width 5] [--head ...] [--num-beams 5 ...]
        [--limit N] [--out DIR]

s2g2t (Sign2Gloss2Text, the cascade): recognise a preprocessed split with the Sign2Gloss checkpoint,
translate the recognised glosses with the Gloss2Text checkpoint, score BLEU-1..4 / ROUGE-L against the
texts in the shards. Writes `sign2gloss/` (the recognition's files), `hypotheses.txt`,
`references.txt`, `translations.tsv` and `scores.json` into `--out` (default `<Sign2Gloss run
dir>/eval_s2g2t_<split>`).

    python jobs/evaluate.py --task s2t --checkpoint RUN_OR_CHECKPOINT [--split dev] [--shards ROOT
        [--dataset NAME]] [--num-beams 5 ...] [--limit N] [--out DIR]

s2t (Sign2Text): translate a preprocessed split from its frames (and keypoints) with a Sign2Text
checkpoint, score BLEU-1..4 / ROUGE-L against the texts and the recognizer's glosses by WER. Writes
`translations.tsv`, `hypotheses.txt`, `references.txt`, `glosses.tsv` and `scores.json` into `--out`
(default `<checkpoint's run dir>/eval_<split>`).

    python jobs/evaluate.py --task table --out DIR --result s2g:dev=eval_dev/scores.json
        [--result g2t:test=...] [--result s2g2t:dev=...] [--result s2t:dev=metrics.json] ...

table: the paper's results table from evaluation summaries (`scores.json` of the tasks above) or
metrics JSON files (Sign2Text: `{"bleu1": .., "bleu4": .., "rouge": ..}`): rows Sign2Gloss (WER),
Gloss2Text, Sign2Gloss2Text, Sign2Text (ROUGE, BLEU-1..4), dev and test columns, "–" where no result
is given. Writes `results.md` and `results.json` into `--out`.

Tasks register in `TASKS` (name -> function(argv) -> summary dict).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from training.cli import LOG_FORMAT
from training.evaluation import evaluate_gloss2text, evaluate_sign2gloss, evaluate_sign2gloss2text, evaluate_sign2text
from training.results_table import task_metrics, write_results_table


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_shards(p: argparse.ArgumentParser, run: str = "the run's") -> None:
    p.add_argument("--shards", help=f"root of preprocessed datasets (default: {run} data.shards)")
    p.add_argument("--dataset", help=f"dataset folder under --shards (default: {run} data.dataset)")


def add_translation_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-beams", type=int)
    p.add_argument("--length-penalty", type=float)
    p.add_argument("--max-length", type=int)


def add_limits(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument("--limit", type=int, help=f"first N {unit} only")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def run_parsed(p: argparse.ArgumentParser, argv: list[str], evaluate: Callable[..., dict]) -> dict:
    """Parse `argv`, set torch's CPU threads, call `evaluate` with the other options."""
    args = vars(p.parse_args(argv))
    set_threads(args.pop("threads"))
    return evaluate(**args)


def g2t_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task g2t", description="Gloss2Text BLEU-1..4 / ROUGE-L")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="checkpoint directory, or a run directory (best checkpoint); several: decode their ensemble")
    p.add_argument("--split", help="split name (default: the run's dev split, or inferred from --annotations)")
    p.add_argument("--annotations", help="annotation file to evaluate instead of the run's corpus file for --split")
    p.add_argument("--format", dest="corpus_format", choices=["phoenix2014t_csv", "slrt_pickle", "synthetic"],
                   help="format of --annotations (default: the run corpus' format)")
    p.add_argument("--glosses", dest="glosses_file", help="predicted glosses, '<name>\\t<glosses>' per line (Sign2Gloss2Text)")
    p.add_argument("--out", dest="out_dir")
    add_translation_decoding(p)
    p.add_argument("--batch-size", type=int)
    add_limits(p, "samples")
    return run_parsed(p, argv, evaluate_gloss2text)


def s2g_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task s2g", description="Sign2Gloss WER per head")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory, or a run directory (best checkpoint)")
    p.add_argument("--split", help="split name (default: the run's dev split)")
    add_shards(p)
    p.add_argument("--out", dest="out_dir")
    p.add_argument("--beam-width", type=int, help="CTC beam width (default: the run's decode.beam_width; 1 = greedy)")
    p.add_argument("--head", choices=["auto", "rgb", "keypoint", "fuse", "ensemble"],
                   help="head to report (default: the head chosen on dev for the checkpoint)")
    p.add_argument("--batch-size", type=int)
    add_limits(p, "videos")
    return run_parsed(p, argv, evaluate_sign2gloss)


def s2g2t_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task s2g2t", description="Sign2Gloss2Text BLEU-1..4 / ROUGE-L")
    p.add_argument("--sign2gloss", required=True, help="Sign2Gloss checkpoint or run directory (best checkpoint)")
    p.add_argument("--gloss2text", required=True, help="Gloss2Text checkpoint or run directory (best checkpoint)")
    p.add_argument("--split", default="dev")
    add_shards(p, "the Sign2Gloss run's")
    p.add_argument("--out", dest="out_dir")
    p.add_argument("--beam-width", type=int, help="CTC beam width (default: the Sign2Gloss run's)")
    p.add_argument("--head", choices=["auto", "rgb", "keypoint", "fuse", "ensemble"])
    add_translation_decoding(p)
    p.add_argument("--batch-size", type=int, help="translation batch size")
    add_limits(p, "videos")
    return run_parsed(p, argv, evaluate_sign2gloss2text)


def s2t_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task s2t", description="Sign2Text BLEU-1..4 / ROUGE-L")
    p.add_argument("--checkpoint", required=True, help="Sign2Text checkpoint or run directory (best checkpoint)")
    p.add_argument("--split", help="split name (default: the run's dev split)")
    add_shards(p)
    p.add_argument("--out", dest="out_dir")
    add_translation_decoding(p)
    p.add_argument("--batch-size", type=int)
    add_limits(p, "videos")
    return run_parsed(p, argv, evaluate_sign2text)


def table_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="evaluate.py --task table", description="results table of the four tasks")
    p.add_argument("--out", required=True, help="folder for results.md and results.json")
    p.add_argument("--result", action="append", default=[], metavar="TASK:SPLIT=JSON",
                   help="a cell: task (s2g, g2t, s2g2t, s2t), split (dev, test), a scores.json or metrics file")
    args = p.parse_args(argv)
    cells = {}
    for item in args.result:
        key, sep, path = item.partition("=")
        task, colon, split = key.partition(":")
        if not (sep and colon and path):
            p.error(f"--result {item!r}: expected TASK:SPLIT=JSON, e.g. s2g:dev=eval_dev/scores.json")
        cells[(task, split)] = task_metrics(task, json.loads(Path(path).read_text()), source=path)
    return write_results_table(args.out, cells)


TASKS: dict[str, Callable[[list[str]], dict]] = {"g2t": g2t_main, "s2g": s2g_main, "s2g2t": s2g2t_main, "s2t": s2t_main,
                                                     "table": table_main}


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    pre = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    pre.add_argument("--task", required=True, choices=sorted(TASKS))
    known, rest = pre.parse_known_args(argv)
    summary = TASKS[known.task](rest)
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
