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
from typing import Callable

from training.cli import LOG_FORMAT
from training.evaluation import evaluate_gloss2text, evaluate_sign2gloss


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


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
    set_threads(args.pop("threads"))
    return evaluate_gloss2text(**args)


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
    set_threads(args.pop("threads"))
    return evaluate_sign2gloss(**args)


TASKS: dict[str, Callable[[list[str]], dict]] = {"g2t": g2t_main, "s2g": s2g_main}


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
