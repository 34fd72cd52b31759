"""The progressive pipeline of Chen et al. (CVPR 2022) in one command: corpus and shards (made if
absent), Sign2Gloss, Gloss2Text, joint Sign2Text, and the results table of the paper's four tasks.

    python jobs/joint_train.py                                        # the embedded synthetic demo
    python jobs/joint_train.py --config configs/joint/phoenix2014t.yaml [key=value ...]
    ray job submit --working-dir . -- python jobs/joint_train.py --config configs/joint/<corpus>.yaml

Each stage is its recipe's own `run(cfg)` (jobs/train_recognition.py, jobs/train_translation.py,
jobs/train_sign2text.py) with the stage's config file and overrides, its runs under
`<out_dir>/<stage>/`. A stage whose run of exactly that config finished is skipped; an
interrupted one resumes from its latest checkpoint (the recipes' own resume); a stage given
`checkpoint:` uses that run or checkpoint instead of training. Sign2Text then joins the two
checkpoints. At the end every task is evaluated on `evaluate.splits` with the best checkpoints:
`<out_dir>/results.md` / `results.json` (laid out like the paper's tables) and
`<out_dir>/pipeline.json` (each stage's summary and time).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field, model_validator

from common.config import StrictModel, load_config, save_config
from common.files import atomic_write_json
from training.cli import recipe_main
from training.ray_train import finished_summary

log = logging.getLogger("joint_train")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "joint" / "demo.yaml"


class StageSection(StrictModel):
    config: str  # the recipe's config file
    overrides: list[str] = []  # key=value, applied after it (the pipeline then sets out_dir and its inputs)
    checkpoint: str | None = None  # a finished run (or checkpoint) of this stage to use instead of training it


class CorpusSection(StrictModel):
    root: str | None = None  # the corpus folder, given to preprocessing and Gloss2Text (None: the stage configs name it)
    synthesize: str | None = None  # a jobs/synthesize.py config: the synthetic corpus is made in `root` if absent
    preprocess: str | None = None  # a jobs/preprocess.py config: the shards are made if absent (None: they exist)
    shards: str  # the shards' folder (the preprocessing's out_dir)
    dataset: str  # the primary dataset in it, e.g. synthetic-sgsl-a

    @model_validator(mode="after")
    def _synthesize_needs_root(self) -> "CorpusSection":
        if self.synthesize and not self.root:
            raise ValueError("corpus.synthesize needs corpus.root (where the synthetic corpus is made)")
        return self


class EvaluateSection(StrictModel):
    splits: list[str] = Field(["dev", "test"], min_length=1)
    sign2gloss2text: bool = True  # the cascade row (recognise, then translate the predicted glosses)


class JointConfig(StrictModel):
    name: str
    out_dir: str
    corpus: CorpusSection
    sign2gloss: StageSection
    gloss2text: StageSection
    sign2text: StageSection
    evaluate: EvaluateSection = EvaluateSection()

    def absolute(self) -> "JointConfig":
        """Relative output and corpus paths made absolute (training.ray_cluster.storage_path), so that
        every stage and Ray worker sees the same folders, under `ray job submit` too."""
        from training.ray_cluster import storage_path

        corpus = self.corpus.model_copy(update={
            "shards": storage_path(self.corpus.shards), "root": self.corpus.root and storage_path(self.corpus.root)})
        return self.model_copy(update={"out_dir": storage_path(self.out_dir), "corpus": corpus})

    @property
    def root(self) -> Path:
        return Path(self.out_dir)


def recipe(stage: str) -> tuple[type[BaseModel], Callable[[Any], dict], Callable[[Any], Any]]:
    """(config schema, run, absolute_paths) of a stage's recipe job."""
    if stage == "sign2gloss":
        from jobs.train_recognition import RecognitionConfig, absolute_paths, run

        return RecognitionConfig, run, absolute_paths
    if stage == "gloss2text":
        from jobs.train_translation import TranslationConfig, absolute_paths, run

        return TranslationConfig, run, absolute_paths
    from jobs.train_sign2text import Sign2TextConfig, absolute_paths, run

    return Sign2TextConfig, run, absolute_paths


def make_corpus(cfg: JointConfig) -> None:
    """The synthetic corpus and the shards, each made only where absent or incomplete (both jobs
    skip finished work and resume interrupted work; preprocessing refuses shards of another corpus)."""
    c = cfg.corpus
    if c.synthesize:
        from jobs.synthesize import SynthesizeConfig, synthesize

        synthesize(load_config(SynthesizeConfig, c.synthesize, [f"out_dir={c.root}"]))
    if c.preprocess:
        from jobs.preprocess import PreprocessConfig
        from jobs.preprocess import run as preprocess

        root = [f"corpus.root={c.root}"] if c.root else []
        pre = load_config(PreprocessConfig, c.preprocess, [*root, f"out_dir={c.shards}"])
        failed = {r.name: r.error_share for r in preprocess(pre) if r.error_share > pre.max_error_share}
        if failed:
            raise RuntimeError(f"preprocessing {c.preprocess}: share of failed videos {failed} above max_error_share "
                               f"{pre.max_error_share} (see errors.parquet in {c.shards})")


def stage_config(cfg: JointConfig, stage: str, inputs: list[str]) -> BaseModel:
    """The stage's recipe config: its file, its overrides, then the pipeline's: where the run goes
    and what it reads (`inputs`)."""
    schema, _, absolute_paths = recipe(stage)
    section: StageSection = getattr(cfg, stage)
    return absolute_paths(load_config(schema, section.config, [*section.overrides, f"out_dir={cfg.root / stage}", *inputs]))


def run_stage(cfg: JointConfig, stage: str, inputs: list[str]) -> dict:
    """Train one stage (or reuse its finished run, or the given checkpoint). Returns its summary
    with `run_dir`, `status` (given / skipped / trained) and `seconds`."""
    t0 = time.time()
    section: StageSection = getattr(cfg, stage)
    if section.checkpoint:
        log.info("%s: using the given %s", stage, section.checkpoint)
        return {"run_dir": str(Path(section.checkpoint).resolve()), "status": "given", "seconds": 0.0}
    stage_cfg = stage_config(cfg, stage, inputs)
    done = finished_summary(stage_cfg.run_dir, stage_cfg)
    if done:
        log.info("%s: %s finished with this config, skipped", stage, stage_cfg.run_dir)
        return {**done, "status": "skipped", "seconds": time.time() - t0}
    log.info("%s: training %s", stage, stage_cfg.run_dir)
    summary = recipe(stage)[1](stage_cfg)
    return {**summary, "status": "trained", "seconds": time.time() - t0}


def evaluate_all(cfg: JointConfig, runs: dict[str, dict]) -> dict:
    """Every task on every split with the stages' best checkpoints; writes the results table."""
    from training.evaluation import evaluate_gloss2text, evaluate_sign2gloss, evaluate_sign2gloss2text, evaluate_sign2text
    from training.results_table import task_metrics, write_results_table

    s2g, g2t, s2t = (runs[s]["run_dir"] for s in ("sign2gloss", "gloss2text", "sign2text"))
    data = {"shards": cfg.corpus.shards, "dataset": cfg.corpus.dataset}
    cells = {}
    for split in cfg.evaluate.splits:
        out = cfg.root / "evaluation" / split
        if cfg.evaluate.sign2gloss2text:  # the cascade recognises the split first: its WER is the Sign2Gloss row's
            cascade = evaluate_sign2gloss2text(s2g, g2t, split=split, out_dir=out / "sign2gloss2text", **data)
            cells[("s2g", split)], cells[("s2g2t", split)] = task_metrics("s2g", cascade), task_metrics("s2g2t", cascade)
        else:
            cells[("s2g", split)] = task_metrics("s2g", evaluate_sign2gloss(s2g, split=split, out_dir=out / "sign2gloss", **data))
        cells[("g2t", split)] = task_metrics("g2t", evaluate_gloss2text(g2t, split=split, out_dir=out / "gloss2text"))
        cells[("s2t", split)] = task_metrics("s2t", evaluate_sign2text(s2t, split=split, out_dir=out / "sign2text", **data))
    return write_results_table(cfg.root, cells)


def plot_first_sample(cfg: JointConfig, split: str) -> Path:
    """`<out_dir>/sample_<split>.png`: the split's first video (by name) with its keypoints, the
    Sign2Text model's glosses and translation, and the references (the evaluation's files)."""
    import pyarrow.parquet as pq

    from pipelines.shards import shard_uris
    from pipelines.video_collate import predecode_row
    from pipelines.video_io import resolve_fs
    from training.sample_figure import plot_sample

    evaluation = cfg.root / "evaluation" / split / "sign2text"
    translations = [line.split("\t") for line in (evaluation / "translations.tsv").read_text().splitlines()[1:]]
    name, text_hyp, text_ref = min(translations)
    glosses = dict(line.split("\t", 1) for line in (evaluation / "glosses.tsv").read_text().splitlines())
    rows = []
    for uri in shard_uris(cfg.corpus.shards, cfg.corpus.dataset, split):
        fs, path = resolve_fs(uri)
        rows = pq.read_table(path, filesystem=fs, filters=[("name", "=", name)]).to_pylist()
        if rows:
            break
    if not rows:
        raise ValueError(f"{cfg.corpus.shards}/{cfg.corpus.dataset} ({split}): no video {name!r}, which {evaluation} translated")
    row = predecode_row(rows[0])
    out = cfg.root / f"sample_{split}.png"
    plot_sample(row["frames"], row.get("keypoints"), glosses_hyp=glosses.get(name, ""), glosses_ref=row["gloss"], text_hyp=text_hyp,
                text_ref=text_ref, path=out)
    return out


def run(cfg: JointConfig) -> dict:
    """Run (or resume) the pipeline; returns {"stages", "results", "files"} (also pipeline.json)."""
    t0 = time.time()
    cfg = cfg.absolute()
    cfg.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.root / "pipeline.yaml")
    make_corpus(cfg)
    data = [f"data.shards={cfg.corpus.shards}", f"data.dataset={cfg.corpus.dataset}"]
    text = [f"data.corpus.root={cfg.corpus.root}"] if cfg.corpus.root else []
    runs = {"sign2gloss": run_stage(cfg, "sign2gloss", data), "gloss2text": run_stage(cfg, "gloss2text", text)}
    runs["sign2text"] = run_stage(cfg, "sign2text", [*data, f"model.sign2gloss={runs['sign2gloss']['run_dir']}",
                                                     f"model.gloss2text={runs['gloss2text']['run_dir']}"])
    results = evaluate_all(cfg, runs)
    figure = plot_first_sample(cfg, cfg.evaluate.splits[0])
    curves = [str(Path(r["run_dir"]) / "learning_curve.png") for r in runs.values() if r["status"] != "given"]
    files = [str(cfg.root / "results.md"), str(cfg.root / "results.json"), str(figure), *curves]
    summary = {"stages": runs, "results": results, "files": files, "wall_s": time.time() - t0}
    atomic_write_json(cfg.root / "pipeline.json", summary)
    print((cfg.root / "results.md").read_text())
    return summary


def main(argv: list[str] | None = None) -> dict:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    return recipe_main(JointConfig, run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
