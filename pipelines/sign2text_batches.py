"""Sign2Text batches: the text targets beside a recognition batch, and batches of cached backbone
features (training/feature_cache.py writes them).

    targets = TextTargets(tokenizer, tgt_lang_id, max_target_length=128)
    batch = {**RecognitionCollate(...)(rows), **targets(texts)}          # from frames
    batch = {**FeatureCollate(glosses, streams)(rows), **targets(texts)}  # from cached features

Feature rows: `name`, `gloss`, `text`, `steps` (valid steps) and `features_<stream>` (steps, C)
float arrays, one per recognizer stream.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from pipelines.recognition_batches import RecognitionCollate
from pipelines.text_tokenizer import TextTokenizer
from pipelines.video_collate import rows_of
from pipelines.vocabulary import GlossVocabulary


def feature_column(stream: str) -> str:
    return f"features_{stream}"


class TextTargets:
    """Texts -> `decoder_input_ids` (B, L) = `<tgt_lang> y_1 .. y_n` and `text_labels` (B, L) =
    `y_1 .. y_n </s>`, padded with the tokenizer's pad id; texts longer than `max_target_length`
    sub-words (with `</s>`) are cut (counted in `truncated`). A missing text is an error naming the
    sample."""

    def __init__(self, tokenizer: TextTokenizer, tgt_lang_id: int, max_target_length: int):
        self.tokenizer, self.tgt_lang_id, self.max_target_length = tokenizer, tgt_lang_id, max_target_length
        self.truncated = 0

    def __call__(self, texts: Sequence[str | None], names: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = []
        for name, text in zip(names, texts):
            if not text:
                raise ValueError(f"sample {name!r} has no text to translate into (Sign2Text needs a translation per video)")
            y = self.tokenizer.encode(text)
            if len(y) + 1 > self.max_target_length:
                self.truncated += 1
                y = y[: self.max_target_length - 1]
            ids.append(y)
        pad, eos = self.tokenizer.pad_id, self.tokenizer.eos_id
        L = max(len(y) for y in ids) + 1
        decoder_input_ids = torch.full((len(ids), L), pad, dtype=torch.long)
        labels = torch.full((len(ids), L), pad, dtype=torch.long)
        for b, y in enumerate(ids):
            decoder_input_ids[b, : len(y) + 1] = torch.tensor([self.tgt_lang_id, *y], dtype=torch.long)
            labels[b, : len(y) + 1] = torch.tensor([*y, eos], dtype=torch.long)
        return {"decoder_input_ids": decoder_input_ids, "text_labels": labels}


class FeatureCollate:
    """Cached feature rows (Ray's numpy column dict or row dicts) -> `stream_features` {stream:
    (B, T'_max, C) float32, zero padded}, `lengths` (B,), gloss `labels` (B, L) / `label_lengths`
    (B,) (ids of `glosses`, unknown ones -> <unk>, counted in `unknown_glosses`), `names`,
    `glosses` (strings), `texts`."""

    def __init__(self, glosses: Sequence[str], streams: Sequence[str]):
        self.glosses, self.streams = list(glosses), list(streams)
        self._vocab: GlossVocabulary | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_vocab": None}

    def __call__(self, batch: Any) -> dict[str, Any]:
        if self._vocab is None:
            self._vocab = GlossVocabulary(self.glosses)
        rows = rows_of(batch)
        lengths = [int(r["steps"]) for r in rows]
        T = max(lengths)
        features = {}
        for s in self.streams:
            arrays = [np.array(r[feature_column(s)], dtype=np.float32) for r in rows]  # a writable copy
            out = torch.zeros(len(rows), T, arrays[0].shape[-1])
            for b, a in enumerate(arrays):
                out[b, : len(a)] = torch.from_numpy(a)
            features[s] = out
        unknown_before = sum(self._vocab.unknown_counts.values())
        ids = [self._vocab.encode(str(r["gloss"]).split()) for r in rows]
        labels = torch.full((len(rows), max(1, *map(len, ids))), self._vocab.pad_id, dtype=torch.int64)
        for b, x in enumerate(ids):
            labels[b, : len(x)] = torch.tensor(x, dtype=torch.int64)
        return {
            "stream_features": features, "lengths": torch.tensor(lengths, dtype=torch.int64),
            "labels": labels, "label_lengths": torch.tensor([len(x) for x in ids], dtype=torch.int64),
            "unknown_glosses": sum(self._vocab.unknown_counts.values()) - unknown_before,
            "names": [str(r["name"]) for r in rows], "glosses": [str(r["gloss"]) for r in rows],
            "texts": [None if r.get("text") is None else str(r["text"]) for r in rows],
        }


class Sign2TextCollate:
    """A recognition collate (frames) or a FeatureCollate (cached features), plus TextTargets."""

    def __init__(self, visual: RecognitionCollate | FeatureCollate, targets: TextTargets):
        self.visual, self.targets = visual, targets

    def __call__(self, batch: Any) -> dict[str, Any]:
        out = self.visual(batch)
        return {**out, **self.targets(out["texts"], out["names"])}
