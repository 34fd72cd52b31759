"""Labels of auxiliary corpora in mixed recognition training (jobs/train_recognition.py,
`data.auxiliary`): relabel files, own classes `<lang>:<gloss>`, the union vocabulary and the share
of auxiliary signs merged into primary glosses.

Relabel file (written by the cross-lingual mapping, read here): JSON lines, one object per sample
of the auxiliary corpus' training split,

    {"name": "<the sample's `name` in the auxiliary shards>", "gloss": "G1 sgsl-b:X G7"}

`gloss` is the sample's gloss sequence with each auxiliary gloss, in order, replaced by the primary
gloss it maps to or kept as its own class `<lang>:<gloss>` (below the mapping's threshold). Every
token is a primary gloss or contains ':'; there is one token per original gloss; every sample of
the split has exactly one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from common.files import atomic_write_text


def own_class(language: str, gloss: str) -> str:
    """The class of an auxiliary gloss kept apart from the primary glosses."""
    return f"{language}:{gloss}"


def read_relabel(path: str | Path) -> dict[str, list[str]]:
    """A relabel file (module docstring) -> {sample name: relabelled glosses}. Errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: relabel file not found (run the cross-lingual mapping first)") from None
    out: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e})") from None
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("gloss"), str):
            raise ValueError(f'{where}: expected {{"name": str, "gloss": str}}, got {line[:120]!r}')
        if item["name"] in out:
            raise ValueError(f"{where}: sample {item['name']!r} appears twice")
        if not item["gloss"].split():
            raise ValueError(f"{where}: sample {item['name']!r} has no glosses")
        out[item["name"]] = item["gloss"].split()
    if not out:
        raise ValueError(f"{path}: relabel file has no samples")
    return out


def write_relabel(path: str | Path, labels: Mapping[str, Sequence[str]]) -> None:
    """Write a relabel file atomically, samples sorted by name."""
    lines = [json.dumps({"name": name, "gloss": " ".join(labels[name])}, ensure_ascii=False) for name in sorted(labels)]
    atomic_write_text(path, "\n".join(lines) + "\n")


@dataclass
class AuxiliaryLabels:
    """One auxiliary corpus' training labels: `labels` maps a sample name to its class sequence
    (space separated); `classes` counts its original gloss classes, `mapped` those merged into a
    primary gloss (by a relabel file, or by name in the same sign language)."""

    labels: dict[str, str]
    classes: int
    mapped: int

    @property
    def mapped_share(self) -> float:
        return self.mapped / max(1, self.classes)

    def summary(self) -> dict:
        return {"clips": len(self.labels), "classes": self.classes, "mapped": self.mapped, "mapped_share": self.mapped_share}


def auxiliary_labels(samples: Mapping[str, str], primary: set[str], *, language: str, relabel: Mapping[str, list[str]] | None,
                     same_language: bool, source: str) -> AuxiliaryLabels:
    """Class sequences of the auxiliary samples (`samples`: name -> original gloss string):
    with `relabel` its sequences (checked against the samples: same names, one token per gloss, each
    a primary gloss or an own class; an original class counts as mapped when one of its occurrences
    became a primary gloss); without, the glosses themselves (`same_language`: merged with the
    primary glosses by name) or all own classes `<language>:<gloss>` (the multi-task baseline).
    `source` (the relabel file or the shards) prefixes errors."""
    originals = {name: gloss.split() for name, gloss in samples.items()}
    classes = {g for glosses in originals.values() for g in glosses}
    if relabel is None:
        if same_language:
            return AuxiliaryLabels({n: " ".join(g) for n, g in originals.items()}, len(classes), len(classes & primary))
        return AuxiliaryLabels({n: " ".join(own_class(language, x) for x in g) for n, g in originals.items()}, len(classes), 0)
    unknown = sorted(set(relabel) - set(originals))
    if unknown:
        raise ValueError(f"{source}: sample {unknown[0]!r} is not in the auxiliary shards ({len(unknown)} such samples)")
    missing = sorted(set(originals) - set(relabel))
    if missing:
        raise ValueError(f"{source}: no line for sample {missing[0]!r} of the auxiliary shards ({len(missing)} missing)")
    mapped: set[str] = set()
    for name, glosses in originals.items():
        new = relabel[name]
        if len(new) != len(glosses):
            raise ValueError(f"{source}: sample {name!r} has {len(new)} relabelled glosses for {len(glosses)} glosses "
                             f"({' '.join(glosses)!r})")
        for old, token in zip(glosses, new):
            if token in primary:
                mapped.add(old)
            elif ":" not in token:
                raise ValueError(f"{source}: sample {name!r}: {token!r} is neither a primary gloss nor an own class "
                                 "'<lang>:<gloss>'")
    return AuxiliaryLabels({n: " ".join(relabel[n]) for n in originals}, len(classes), len(mapped))


def union_glosses(primary: Sequence[str], auxiliary: Iterable[AuxiliaryLabels]) -> list[str]:
    """The training vocabulary's glosses: the primary glosses in their order, then the auxiliary
    classes that are not primary glosses, sorted (primary ids stay those of a primary-only run)."""
    known = set(primary)
    extra = {g for aux in auxiliary for label in aux.labels.values() for g in label.split()} - known
    return [*primary, *sorted(extra)]
