"""The results table of the first paper's four tasks, dev and test columns, as Markdown and JSON.

Rows: Sign2Gloss (WER), Gloss2Text, Sign2Gloss2Text, Sign2Text (ROUGE-L, BLEU-1..4); each split's
columns are WER, ROUGE, BLEU-1..4, in percent with two decimals; a cell without a number is "–".
Cells come from `jobs/evaluate.py` summaries (`scores.json`) or from plain metrics dicts
(`{"bleu1": .., "bleu4": .., "rouge": ..}`, `{"wer": ..}`).
"""

from __future__ import annotations

from pathlib import Path

from common.files import atomic_write_json, atomic_write_text

TASKS = {"s2g": "Sign2Gloss", "g2t": "Gloss2Text", "s2g2t": "Sign2Gloss2Text", "s2t": "Sign2Text"}
SPLITS = ("dev", "test")
METRICS = {"wer": "WER", "rouge": "ROUGE", "bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4"}
TASK_METRICS = {"s2g": ("wer",), **{t: ("rouge", "bleu1", "bleu2", "bleu3", "bleu4") for t in ("g2t", "s2g2t", "s2t")}}
MISSING = "–"


def task_metrics(task: str, result: dict, source: str = "result") -> dict[str, float]:
    """The table's numbers of one cell from an evaluation summary or a metrics dict. Sign2Gloss: the
    WER of the summary's reported head (`wer` may be a number or {head: WER}); translation tasks:
    `scores` (or the dict itself) with rouge and bleu1..4. `source` names the result in errors."""
    if task not in TASKS:
        raise ValueError(f"{source}: unknown task {task!r} (tasks: {', '.join(TASKS)})")
    if task == "s2g":
        wer = result.get("wer")
        if isinstance(wer, dict):
            if result.get("head") not in wer:
                raise ValueError(f"{source}: WER per head {sorted(wer)} but no reported head (key 'head')")
            wer = wer[result["head"]]
        if not isinstance(wer, (int, float)):
            raise ValueError(f"{source}: a Sign2Gloss result needs 'wer' (a number, or per head with 'head')")
        return {"wer": float(wer)}
    scores = result.get("scores", result)
    missing = [k for k in TASK_METRICS[task] if k not in scores]
    if missing:
        raise ValueError(f"{source}: {TASKS[task]} result lacks {missing}")
    return {k: float(scores[k]) for k in TASK_METRICS[task]}


def results_table(cells: dict[tuple[str, str], dict]) -> dict:
    """{(task, split): metrics dict (task_metrics' output)} -> the table as JSON: every task and split
    in the papers' order, a missing cell as null."""
    for task, split in cells:
        if task not in TASKS or split not in SPLITS:
            raise ValueError(f"cell ({task!r}, {split!r}): tasks are {list(TASKS)}, splits {list(SPLITS)}")
    rows = [{"task": TASKS[t], **{s: {m: cells.get((t, s), {}).get(m) for m in METRICS} for s in SPLITS}} for t in TASKS]
    return {"metrics": list(METRICS), "splits": list(SPLITS), "rows": rows}


def markdown_table(table: dict) -> str:
    """The JSON table as Markdown: one row per task, `<Split> <metric>` columns, "–" where empty."""
    header = ["Task"] + [f"{s.capitalize()} {METRICS[m]}" for s in table["splits"] for m in table["metrics"]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in table["rows"]:
        values = [MISSING if row[s][m] is None else f"{row[s][m]:.2f}" for s in table["splits"] for m in table["metrics"]]
        lines.append("| " + " | ".join([row["task"], *values]) + " |")
    return "\n".join(lines) + "\n"


def write_results_table(out_dir: str | Path, cells: dict[tuple[str, str], dict]) -> dict:
    """`results.md` and `results.json` in `out_dir`; returns the JSON table."""
    table = results_table(cells)
    atomic_write_json(Path(out_dir) / "results.json", table)
    atomic_write_text(Path(out_dir) / "results.md", markdown_table(table))
    return table
