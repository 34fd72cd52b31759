"""The cross-lingual pipeline (Wei & Chen, ICCV 2023) as a chain of jobs, each stage reading the
previous stage's files: Sign2Gloss runs -> dictionaries -> multilingual ISLR -> cross-lingual mapping
-> mixed recognition training -> a threshold sweep over the mapping's relabel files. End to end on the tiny synthetic corpus with the
shipped tiny configs (paths pointed at the test's folders; one epoch per training run), and the
shipped demo configs' paths checked to chain as the README's commands give them."""

from __future__ import annotations

import csv
import json
import re
import shlex
from collections import Counter
from os.path import normpath
from pathlib import Path

import pytest

from common.config import load_config
from jobs.build_dictionary import DictionaryConfig
from jobs.map_signs import MappingConfig
from jobs.preprocess import PreprocessConfig
from jobs.sweep import SweepConfig, trial_overrides
from jobs.synthesize import SynthesizeConfig
from jobs.train_islr import ISLRRecipeConfig
from jobs.train_recognition import RecognitionConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SCHEMAS = {"synthesize": SynthesizeConfig, "preprocess": PreprocessConfig, "train_recognition": RecognitionConfig,
           "build_dictionary": DictionaryConfig, "train_islr": ISLRRecipeConfig, "map_signs": MappingConfig,
           "sweep": SweepConfig}
PRIMARY, AUXILIARY = "sgsl-a", "sgsl-b"


# ---- the demo configs chain ----------------------------------------------------------------------------------


def readme_commands(section: str) -> list[tuple[str, object]]:
    """The `jobs/<job>.py --config <file> key=value ...` commands of a README section's code blocks,
    in order, each as (job, its loaded config)."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"### {section}")
    body = text[start : text.find("\n### ", start + 1)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if len(words) < 2 or not words[1].startswith("jobs/"):
                continue
            job = Path(words[1]).stem
            config = words[words.index("--config") + 1]
            commands.append((job, load_config(SCHEMAS[job], REPO / config, words[words.index("--config") + 2 :])))
    return commands


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normpath(a) == normpath(b)


def relabel_files(mapping: MappingConfig) -> set[str]:
    """The relabel files a mapping run writes (jobs/map_signs.py)."""
    out = Path(mapping.out_dir) / mapping.name
    return {normpath(out / "relabelled.jsonl")} | {normpath(out / f"relabelled_t{t:.2f}.jsonl") for t in mapping.sweep_thresholds}


def check_recognition(cfg: RecognitionConfig, shards: str, datasets: dict[str, str], relabels: set[str] | None) -> None:
    assert same(cfg.data.shards, shards) and cfg.data.dataset in datasets.values(), cfg.data
    for key, aux in cfg.data.auxiliary.items():
        assert same(aux.shards, shards) and aux.dataset == datasets[AUXILIARY], (key, aux)
        if relabels is not None:
            assert aux.relabel is not None and normpath(aux.relabel) in relabels, (key, aux.relabel, relabels)


def check_chain(commands: list[tuple[str, object]]) -> None:
    """Each stage's inputs are an earlier stage's outputs: corpus -> shards -> Sign2Gloss per language
    -> dictionary per language -> ISLR -> mapping -> mixed recognition and sweeps (every trial)."""
    jobs = [job for job, _ in commands]
    assert jobs[:2] == ["synthesize", "preprocess"] and "map_signs" in jobs and jobs.count("build_dictionary") == 2, jobs
    (_, synth), (_, pre) = commands[:2]
    assert same(pre.corpus.root, synth.out_dir) and pre.languages == ["*"]
    datasets = {lang.code: pre.name.format(corpus=pre.corpus.name, language=lang.code) for lang in (synth.primary, synth.auxiliary)}
    assert list(datasets) == [PRIMARY, AUXILIARY]
    s2g: dict[str, str] = {}  # run folder -> the dataset it was trained on
    dictionaries: dict[str, str] = {}  # dataset -> dictionary folder
    islr = mapping = None
    for job, cfg in commands[2:]:
        if job == "train_recognition" and mapping is None:  # Sign2Gloss of one language
            check_recognition(cfg, pre.out_dir, datasets, None)
            s2g[normpath(cfg.run_dir)] = cfg.data.dataset
        elif job == "build_dictionary":
            assert same(cfg.shards, pre.out_dir) and cfg.dataset in datasets.values(), cfg
            assert s2g.get(normpath(cfg.checkpoint)) == cfg.dataset, (cfg.checkpoint, s2g)  # its own language's model
            dictionaries[cfg.dataset] = cfg.output_uri
        elif job == "train_islr":
            got = [normpath(lang.dictionary) for lang in cfg.data.languages]
            assert got == [normpath(dictionaries[datasets[PRIMARY]]), normpath(dictionaries[datasets[AUXILIARY]])]
            assert cfg.pretrained.sign2gloss is None or normpath(cfg.pretrained.sign2gloss) in s2g
            islr = cfg
        elif job == "map_signs":
            assert islr is not None and same(cfg.checkpoint, str(islr.run_dir))
            assert same(cfg.primary_dictionary, dictionaries[datasets[PRIMARY]])
            assert same(cfg.auxiliary_dictionary, dictionaries[datasets[AUXILIARY]])
            assert cfg.annotations is None and same(cfg.truth, synth.out_dir)  # the dictionary's source shards; the corpus
            mapping = cfg
        elif job == "train_recognition":  # mixed training on the mapping's relabel file
            assert cfg.data.auxiliary and cfg.data.alpha > 0
            check_recognition(cfg, pre.out_dir, datasets, relabel_files(mapping))
            for stream in (cfg.pretrained.rgb_stream, cfg.pretrained.keypoint_stream):  # a Sign2Gloss run of the chain
                assert stream is None or normpath(stream) in s2g, (stream, s2g)
        elif job == "sweep":
            assert mapping is not None and cfg.recipe == "recognition"
            for key, values in cfg.search.grid.items():
                for value in values:
                    trial = load_config(RecognitionConfig, REPO / cfg.config, trial_overrides(cfg, {key: value}, "trial_x"))
                    check_recognition(trial, pre.out_dir, datasets, relabel_files(mapping))
        else:
            raise AssertionError(f"unexpected job {job} in the chain")
    assert mapping is not None and jobs[-1] == "sweep"


def test_the_readme_commands_chain_the_demo_configs():
    commands = readme_commands("The cross-lingual pipeline, as commands")
    assert [job for job, _ in commands] == ["synthesize", "preprocess", "train_recognition", "build_dictionary",
                                            "train_recognition", "build_dictionary", "train_islr", "map_signs",
                                            "train_recognition", "sweep", "sweep", "sweep"]
    configs = [c for _, c in commands]
    assert [c.name for c in configs[-3:]] == ["demo_alpha", "demo_alpha_seeds", "demo_threshold"]
    # the threshold sweep trains on one relabel file per threshold, each written by the mapping
    assert sorted(configs[-1].search.grid["threshold"]) == sorted(configs[7].sweep_thresholds)
    check_chain(commands)


def test_every_relabel_path_in_the_readme_is_a_file_the_demo_mapping_writes():
    files = relabel_files(load_config(MappingConfig, CONFIGS / "mapping/demo.yaml"))
    paths = re.findall(r"relabel=(\S+)", (REPO / "README.md").read_text())
    assert paths and all(normpath(p) in files for p in paths), (paths, files)


def test_the_tiny_configs_chain_as_their_headers_say():
    def cfg(job: str, path: str, *overrides: str) -> tuple[str, object]:
        return job, load_config(SCHEMAS[job], CONFIGS / path, list(overrides))

    check_chain([cfg("synthesize", "synthesize/tiny.yaml"), cfg("preprocess", "data/synthetic_tiny.yaml"),
                 cfg("train_recognition", "recognition/synthetic_tiny.yaml"), cfg("build_dictionary", "dictionary/tiny.yaml"),
                 cfg("train_recognition", "recognition/synthetic_tiny.yaml", "name=s2g_tiny_sgsl_b", "data.dataset=synthetic-sgsl-b"),
                 cfg("build_dictionary", "dictionary/tiny.yaml", "dataset=synthetic-sgsl-b",
                     "checkpoint=outputs/recognition/s2g_tiny_sgsl_b"),
                 cfg("train_islr", "islr/tiny.yaml"), cfg("map_signs", "mapping/tiny.yaml"),
                 cfg("sweep", "sweeps/tiny_threshold.yaml")])


# ---- end to end on the tiny corpus ---------------------------------------------------------------------------


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _recognition(tmp_path: Path, shards: Path, *overrides: str) -> RecognitionConfig:
    return load_config(RecognitionConfig, CONFIGS / "recognition/synthetic_tiny.yaml",
                       [f"out_dir={tmp_path / 'recognition'}", f"data.shards={shards}", "train.epochs=1", "final_eval=false",
                        *overrides])


@pytest.mark.slow
def test_dictionary_islr_mapping_mixed_training_and_sweep_on_the_tiny_corpus(tiny_synthetic, tmp_path):
    from jobs.build_dictionary import run as build_dictionary
    from jobs.map_signs import run as map_signs
    from jobs.sweep import run as sweep
    from jobs.train_islr import run as train_islr
    from jobs.train_recognition import run as train_recognition, split_samples
    from pipelines.auxiliary_labels import read_relabel
    from pipelines.dictionary import read_dictionary_table
    from training.checkpoint import load_islr, load_sign2gloss

    corpus, shards = tiny_synthetic
    datasets = {lang: f"synthetic-{lang}" for lang in (PRIMARY, AUXILIARY)}

    # Sign2Gloss per language, then each language's dictionary cut by its own model
    s2g = {lang: train_recognition(_recognition(tmp_path, shards, f"name=s2g_{lang}", f"data.dataset={d}"))
           for lang, d in datasets.items()}
    dictionaries = {}
    for lang, d in datasets.items():
        got = build_dictionary(load_config(DictionaryConfig, CONFIGS / "dictionary/tiny.yaml", [
            f"out_dir={tmp_path / 'dictionary'}", f"shards={shards}", f"dataset={d}", f"checkpoint={s2g[lang]['run_dir']}"]))
        assert got["language"] == lang and got["statistics"]["splits"]["train"]["segments"] > 0
        dictionaries[lang] = got["dictionary"]

    # multilingual ISLR on both dictionaries (the shipped min_count kept)
    islr_cfg = load_config(ISLRRecipeConfig, CONFIGS / "islr/tiny.yaml")
    languages = ", ".join(f"{{dictionary: {dictionaries[lang]}, min_count: {section.min_count}}}"
                          for lang, section in zip((PRIMARY, AUXILIARY), islr_cfg.data.languages))
    islr = train_islr(load_config(ISLRRecipeConfig, CONFIGS / "islr/tiny.yaml", [
        f"out_dir={tmp_path / 'islr'}", f"data.languages=[{languages}]", "train.epochs=1"]))
    classes = load_islr(islr["run_dir"]).classes
    assert list(classes) == [PRIMARY, AUXILIARY]

    # the mapping at threshold 0: every sign with clips is mapped, the others keep their own class
    mapping = map_signs(load_config(MappingConfig, CONFIGS / "mapping/tiny.yaml", [
        f"out_dir={tmp_path / 'mapping'}", f"checkpoint={islr['run_dir']}", f"primary_dictionary={dictionaries[PRIMARY]}",
        f"auxiliary_dictionary={dictionaries[AUXILIARY]}", f"truth={corpus}", "threshold=0.0"]))
    out = Path(mapping["out_dir"])
    source = {n: g.split() for n, g in split_samples(str(shards), datasets[AUXILIARY], "train")[1].items()}
    assert len(source) == 6  # configs/synthesize/tiny.yaml: sgsl-b's training split
    clip_counts = Counter(read_dictionary_table(dictionaries[AUXILIARY], ["train"], ["gloss"]).column("gloss").to_pylist())
    rows = {r["aux_gloss"]: r for r in _csv(out / "mapping.csv")}
    assert set(rows) == set(clip_counts) | {g for glosses in source.values() for g in glosses}
    for gloss, r in rows.items():
        assert int(r["clips"]) == clip_counts[gloss] and r["mapped"] == str(clip_counts[gloss] > 0), r
        assert r["label"] == (r["primary_gloss"] if r["mapped"] == "True" else f"{AUXILIARY}:{gloss}"), r
        assert r["mapped"] == "False" or r["primary_gloss"] in classes[PRIMARY], r
    relabelled = read_relabel(out / "relabelled.jsonl")
    assert sorted(relabelled) == sorted(source)  # every sgsl-b training sample, one token per source gloss
    for name, labels in relabelled.items():
        assert labels == [rows[g]["label"] for g in source[name]], name
    assert read_relabel(out / "relabelled_t0.00.jsonl") == relabelled  # the shipped sweep thresholds: 0 and 1
    assert read_relabel(out / "relabelled_t1.00.jsonl") == {n: [f"{AUXILIARY}:{g}" for g in gs] for n, gs in source.items()}

    # mixed training on sgsl-a with sgsl-b relabelled, 1:0.5
    mixing = [f"data.auxiliary.sgsl_b.shards={shards}", f"data.auxiliary.sgsl_b.dataset={datasets[AUXILIARY]}",
              f"data.auxiliary.sgsl_b.relabel={out / 'relabelled.jsonl'}"]
    mixed = train_recognition(_recognition(tmp_path, shards, "name=mixed", f"data.dataset={datasets[PRIMARY]}", *mixing,
                                           "data.alpha=0.5"))
    primary = load_sign2gloss(s2g[PRIMARY]["run_dir"]).vocab.glosses  # sgsl-a's training glosses
    classes_b = {g for gs in source.values() for g in gs}
    own = sorted(f"{AUXILIARY}:{g}" for g in classes_b if rows[g]["mapped"] == "False")  # sgsl-b signs without clips
    assert load_sign2gloss(mixed["run_dir"]).vocab.glosses == [*primary, *own] and mixed["vocabulary"] == len(primary) + len(own)
    share = sum(rows[g]["mapped"] == "True" for g in classes_b) / len(classes_b)
    assert mixed["aux_mapped_share"] == pytest.approx(share)
    (epoch,) = [json.loads(line) for line in (Path(mixed["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    primary_train = mixed["train_videos"]
    assert epoch["train_aux_clips"] == round(0.5 * primary_train) > 0
    assert epoch["train_clips"] == primary_train + epoch["train_aux_clips"]

    # the threshold sweep at alpha 0.5 on the mapping's relabel files: 0 (as the mixed run) and 1 (nothing mapped)
    cfg = load_config(SweepConfig, CONFIGS / "sweeps/tiny_threshold.yaml", [
        f"out_dir={tmp_path / 'sweeps'}", f"derived={{data.auxiliary.sgsl_b.relabel: '{out}/relabelled_t{{threshold:.2f}}.jsonl'}}"])
    cfg = cfg.model_copy(update={"overrides": [*cfg.overrides, f"data.shards={shards}", f"data.auxiliary.sgsl_b.shards={shards}"]})
    trials = {r["threshold"]: r for r in sweep(cfg)["rows"]}
    assert sorted(trials) == [0.0, 1.0] and all(r["status"] == "finished" and r["epochs"] == 1 for r in trials.values())
    assert (trials[0.0]["vocabulary"], trials[0.0]["aux_mapped_share"]) == (mixed["vocabulary"], pytest.approx(share))
    assert (trials[1.0]["vocabulary"], trials[1.0]["aux_mapped_share"]) == (len(primary) + len(classes_b), 0.0)
    table = (cfg.sweep_dir / "results.md").read_text()
    assert "| 1 | finished |" in table and "| 0 | finished |" in table
