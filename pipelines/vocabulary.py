"""Gloss vocabulary for CTC: blank = 0, pad = 1, unk = 2, then the training split's glosses."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from common.files import atomic_write_json
from pipelines.records import Sample

BLANK, PAD, UNK = "<blank>", "<pad>", "<unk>"
SPECIALS = (BLANK, PAD, UNK)
FORMAT = "signbridge-gloss-vocabulary"


class GlossVocabulary:
    """Maps glosses to ids. Unknown glosses map to `unk_id` and are counted in `unknown_counts`."""

    blank_id, pad_id, unk_id = 0, 1, 2

    def __init__(self, glosses: Sequence[str]):
        glosses = list(glosses)
        clash = [g for g in glosses if g in SPECIALS]
        if clash:
            raise ValueError(f"glosses may not use the reserved tokens {clash}")
        if len(set(glosses)) != len(glosses):
            dupes = sorted(g for g, c in Counter(glosses).items() if c > 1)
            raise ValueError(f"duplicate glosses in vocabulary: {dupes[:10]}")
        self.itos: list[str] = [*SPECIALS, *glosses]
        self.stoi: dict[str, int] = {g: i for i, g in enumerate(self.itos)}
        self.unknown_counts: Counter[str] = Counter()

    @classmethod
    def from_training_samples(cls, samples: Iterable[Sample], min_count: int = 1) -> "GlossVocabulary":
        """Glosses of the training split (sorted), those seen at least `min_count` times.

        Refuses samples from other splits: building from dev/test (as the public code does with
        train+dev+test) leaks the evaluation data into the model.
        """
        counts: Counter[str] = Counter()
        for s in samples:
            if s.split != "train":
                raise ValueError(f"sample {s.name!r} is from split {s.split!r}: build the vocabulary from train only")
            counts.update(s.glosses)
        if not counts:
            raise ValueError("no training samples: cannot build a gloss vocabulary")
        return cls(sorted(g for g, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, gloss: str) -> bool:
        return gloss in self.stoi

    @property
    def glosses(self) -> list[str]:
        return self.itos[len(SPECIALS):]

    def encode(self, glosses: Sequence[str]) -> list[int]:
        """Gloss ids; glosses not in the vocabulary become `unk_id` and are counted."""
        ids = []
        for g in glosses:
            i = self.stoi.get(g)
            if i is None or i < len(SPECIALS):
                self.unknown_counts[g] += 1
                i = self.unk_id
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Glosses for ids, dropping blank and pad."""
        return [self.itos[i] for i in ids if i not in (self.blank_id, self.pad_id)]

    def save(self, path: str | Path) -> None:
        """Write JSON atomically."""
        atomic_write_json(path, {"format": FORMAT, "version": 1, "specials": list(SPECIALS), "glosses": self.glosses})

    @classmethod
    def load(cls, path: str | Path) -> "GlossVocabulary":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: gloss vocabulary not found") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON gloss vocabulary ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("specials") != list(SPECIALS):
            raise ValueError(f"{path}: not a {FORMAT} file with specials {list(SPECIALS)}")
        return cls(data["glosses"])
