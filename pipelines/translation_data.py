"""Gloss2Text examples: samples -> (gloss ids, text ids), length-bucketed batches, padding.

Glosses never seen in training: `cover_unseen_glosses` gives each one spelled with known sub-words an
id past the training vocabulary (the model embeds it from its spelling, see
`models.translation.GlossToText.set_unseen_glosses`); the others become `<unk>`.

Bad input: a gloss the vocabulary lacks becomes `<unk>` (counted in `EncodingStats`); an empty
gloss sequence is an error naming the sample; a text (or gloss sequence) longer than the maximum
length is truncated and counted, and the caller logs the count.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from pipelines.records import Sample
from pipelines.text_tokenizer import WORD_BOUNDARY, TextTokenizer
from pipelines.vocabulary import GlossVocabulary


@dataclass(frozen=True)
class TranslationExample:
    """One encoded sample. gloss_ids: gloss vocabulary ids; target_ids: sub-word ids of the text
    (no specials; empty when the sample has no text)."""

    name: str
    gloss_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    text: str | None


@dataclass
class EncodingStats:
    """What encoding had to change: unknown glosses (gloss -> count), truncations."""

    unknown_glosses: Counter = field(default_factory=Counter)
    unknown_gloss_tokens: int = 0
    gloss_tokens: int = 0
    truncated_sources: int = 0
    truncated_targets: int = 0

    def summary(self) -> dict:
        return {
            "gloss_tokens": self.gloss_tokens,
            "unknown_gloss_tokens": self.unknown_gloss_tokens,
            "unknown_gloss_types": len(self.unknown_glosses),
            "truncated_sources": self.truncated_sources,
            "truncated_targets": self.truncated_targets,
        }


def normalize_glosses(samples: Sequence[Sample], lowercase: bool = True) -> list[Sample]:
    """Samples with lower-cased glosses (when `lowercase`), as the papers' mBART input."""
    if not lowercase:
        return list(samples)
    return [dataclasses.replace(s, glosses=tuple(g.lower() for g in s.glosses)) for s in samples]


def read_text_samples(corpus, split: str, *, lowercase_glosses: bool = True, limit: int | None = None) -> list[Sample]:
    """The first `limit` (None: all) samples of a corpus split (a pipelines.corpora.CorpusConfig), each
    with a text, glosses normalised as the model reads them; a sample without text is an error
    naming the file."""
    from pipelines.corpora import read_corpus

    samples = read_corpus(corpus, split)
    samples = samples[:limit] if limit else samples
    missing = [s.name for s in samples if not s.text]
    if missing:
        raise ValueError(f"{corpus.annotation_file(split)}: {len(missing)} sample(s) have no text, e.g. {missing[:3]}")
    return normalize_glosses(samples, lowercase_glosses)


# How gloss annotations transliterate letters the texts write (PHOENIX: KOENNEN for "können").
TRANSLITERATIONS = (("ae", "ä"), ("oe", "ö"), ("ue", "ü"), ("ss", "ß"))


def _respellings(word: str) -> list[str]:
    """`word` with every subset of its transliterated letters restored, `word` itself first."""
    letters = dict(TRANSLITERATIONS)
    out = [""]
    i = 0
    while i < len(word):
        pair = word[i : i + 2]
        letter = letters.get(pair)
        if letter is not None:
            out = [o + pair for o in out] + [o + letter for o in out]
            i += 2
        else:
            out = [o + word[i] for o in out]
            i += 1
    return out


def text_spellings(glosses: Iterable[str], texts: Iterable[str]) -> dict[str, str]:
    """Per gloss the spelling the texts use for it, where that differs from the gloss: each
    hyphen-separated part that is not a word of `texts` but becomes one when transliterated letters
    (ae, oe, ue, ss) are restored (ä, ö, ü, ß) takes the most frequent such word. Glosses are compared
    as given (normalise case first); `texts` should be training texts only.
    E.g. {"koennen": "können", "neg-koennen": "neg-können"} when the texts hold "können"."""
    counts = Counter(w for t in texts for w in t.split())
    out = {}
    for gloss in dict.fromkeys(glosses):
        parts = []
        for part in gloss.split("-"):
            if part not in counts:
                found = [w for w in _respellings(part)[1:] if w in counts]
                part = max(found, key=lambda w: counts[w]) if found else part
            parts.append(part)
        spelled = "-".join(parts)
        if spelled != gloss:
            out[gloss] = spelled
    return out


def gloss_subword_ids(vocab: GlossVocabulary, tokenizer: TextTokenizer,
                      spellings: dict[str, str] | None = None) -> list[list[int]]:
    """Per gloss id its sub-token ids in the text vocabulary, of its spelling in `spellings` where it
    has one (`text_spellings`), else as written; `<unk>`/`<blank>` -> [unk], pad -> []."""
    spellings = spellings or {}
    out = []
    for i, g in enumerate(vocab.itos):
        if i == vocab.pad_id:
            out.append([])
        elif i in (vocab.blank_id, vocab.unk_id):
            out.append([tokenizer.unk_id])
        else:
            out.append(tokenizer.encode(spellings.get(g, g)) or [tokenizer.unk_id])
    return out


def cover_unseen_glosses(samples: Sequence[Sample], vocab: GlossVocabulary,
                         tokenizer: TextTokenizer) -> tuple[GlossVocabulary, list[list[int]]]:
    """The glosses of `samples` (normalised) missing from `vocab`, in order of first occurrence,
    appended to a copy of it, with each one's sub-token ids (the spelling's, `<unk>` pieces and a bare
    word-boundary piece left out). A gloss none of whose pieces the tokenizer knows is not appended:
    it stays `<unk>`.
    Reads only the glosses, the model's input (never texts)."""
    new, subwords, seen = [], [], set()
    for s in samples:
        for g in s.glosses:
            if g in vocab or g in seen:
                continue
            seen.add(g)
            # SentencePiece may split off the bare word-boundary piece: it says nothing about the gloss
            ids = [i for i in tokenizer.encode(g) if i != tokenizer.unk_id and tokenizer.piece(i) != WORD_BOUNDARY]
            if ids:
                new.append(g)
                subwords.append(ids)
    if not new:
        return vocab, []
    return GlossVocabulary([*vocab.glosses, *new]), subwords


def encode_examples(
    samples: Sequence[Sample],
    vocab: GlossVocabulary,
    tokenizer: TextTokenizer,
    *,
    max_source_length: int,
    max_target_length: int,
    stats: EncodingStats | None = None,
) -> list[TranslationExample]:
    """Encode samples (glosses already normalised). Target length counts the text's sub-words
    plus `</s>`; longer texts are cut to fit."""
    stats = stats if stats is not None else EncodingStats()
    out = []
    for s in samples:
        if not s.glosses:
            raise ValueError(f"sample {s.name!r} ({s.split}): empty gloss sequence")
        ids = vocab.encode(s.glosses)
        unknown = [g for g, i in zip(s.glosses, ids) if i == vocab.unk_id]
        stats.unknown_glosses.update(unknown)
        stats.unknown_gloss_tokens += len(unknown)
        stats.gloss_tokens += len(ids)
        if len(ids) > max_source_length:
            stats.truncated_sources += 1
            ids = ids[:max_source_length]
        target: list[int] = []
        if s.text:
            target = tokenizer.encode(s.text)
            if len(target) + 1 > max_target_length:
                stats.truncated_targets += 1
                target = target[: max_target_length - 1]
        out.append(TranslationExample(s.name, tuple(ids), tuple(target), s.text))
    return out


def token_batches(
    examples: Sequence[TranslationExample],
    *,
    max_tokens: int,
    max_sentences: int = 512,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[list[int]]:
    """Batches of example indices with similar lengths: sorted by (source, target) length (ties
    broken at random when shuffling), filled while `batch_size * longest target (+1)` stays within
    `max_tokens`, then shuffled. Rank `r` of `world_size` gets every world_size-th batch; all ranks
    get the same number of batches."""
    rng = random.Random(seed)
    keys = [(len(e.gloss_ids), len(e.target_ids), rng.random() if shuffle else i) for i, e in enumerate(examples)]
    order = sorted(range(len(examples)), key=lambda i: keys[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(len(examples[i].target_ids), len(examples[i].gloss_ids)) + 1
        if current and (max(longest, n) * (len(current) + 1) > max_tokens or len(current) >= max_sentences):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    if world_size > 1:
        per_rank = len(batches) // world_size
        if per_rank == 0:
            raise ValueError(f"{len(batches)} batches cannot be shared by {world_size} workers; lower max_tokens")
        batches = batches[rank::world_size][:per_rank]
    return batches


def collate(
    examples: Sequence[TranslationExample],
    *,
    tgt_lang_id: int,
    pad_id: int = 1,
    eos_id: int = 2,
    gloss_pad_id: int = GlossVocabulary.pad_id,
) -> dict[str, torch.Tensor]:
    """Pad a batch.

    gloss_ids (B, S) right-padded with the gloss pad id; gloss_lengths (B,);
    decoder_input_ids (B, T) = `<tgt_lang> y_1 .. y_n`; labels (B, T) = `y_1 .. y_n </s>`; both
    padded with `pad_id` (T = longest text + 1).
    """
    B = len(examples)
    S = max(len(e.gloss_ids) for e in examples)
    T = max(len(e.target_ids) for e in examples) + 1
    gloss_ids = torch.full((B, S), gloss_pad_id, dtype=torch.long)
    decoder_input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), pad_id, dtype=torch.long)
    for b, e in enumerate(examples):
        gloss_ids[b, : len(e.gloss_ids)] = torch.tensor(e.gloss_ids, dtype=torch.long)
        y = list(e.target_ids)
        decoder_input_ids[b, : len(y) + 1] = torch.tensor([tgt_lang_id, *y], dtype=torch.long)
        labels[b, : len(y) + 1] = torch.tensor([*y, eos_id], dtype=torch.long)
    gloss_lengths = torch.tensor([len(e.gloss_ids) for e in examples], dtype=torch.long)
    return {"gloss_ids": gloss_ids, "gloss_lengths": gloss_lengths, "decoder_input_ids": decoder_input_ids, "labels": labels}


def augment_glosses(
    gloss_ids: Sequence[int], rng: random.Random, *, drop_prob: float = 0.0, unk_prob: float = 0.0, unk_id: int = GlossVocabulary.unk_id
) -> tuple[int, ...]:
    """Training-time source noise: each gloss is dropped with `drop_prob` or replaced by `<unk>`
    with `unk_prob` (at least one gloss is always kept)."""
    if drop_prob <= 0 and unk_prob <= 0:
        return tuple(gloss_ids)
    out = []
    for g in gloss_ids:
        r = rng.random()
        if r < drop_prob:
            continue
        out.append(unk_id if r < drop_prob + unk_prob else g)
    return tuple(out) if out else (gloss_ids[rng.randrange(len(gloss_ids))],)


def noise_decoder_inputs(decoder_input_ids: torch.Tensor, prob: float, *, pad_id: int = 1, unk_id: int = 3) -> torch.Tensor:
    """Training-time target-side word dropout: each previous-token input of the decoder (not the
    leading language token, not padding) becomes `<unk>` with probability `prob`. (B, T) -> (B, T)."""
    noisy = decoder_input_ids.clone()
    hit = torch.rand(noisy.shape) < prob
    hit[:, 0] = False
    hit &= noisy.ne(pad_id)
    noisy[hit] = unk_id
    return noisy


def read_gloss_predictions(path: str | Path, samples: Sequence[Sample]) -> list[Sample]:
    """Replace the glosses of `samples` by predicted ones (Sign2Gloss2Text).

    File format: UTF-8, one line per sample, `<name>\\t<gloss> <gloss> ...`. Every sample must be
    present once; unknown names, duplicates and empty gloss lines are errors naming the line.
    """
    path = Path(path)
    by_name = {s.name: s for s in samples}
    predicted: dict[str, tuple[str, ...]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: gloss prediction file not found") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, sep, glosses = line.partition("\t")
        name = name.strip()
        if not sep:
            raise ValueError(f"{path}:{number}: expected '<name>\\t<glosses>', got {line[:80]!r}")
        if name not in by_name:
            raise ValueError(f"{path}:{number}: sample {name!r} is not in the evaluated split")
        if name in predicted:
            raise ValueError(f"{path}:{number}: duplicate sample {name!r}")
        if not glosses.split():
            raise ValueError(f"{path}:{number}: sample {name!r}: empty gloss sequence")
        predicted[name] = tuple(glosses.split())
    missing = [s.name for s in samples if s.name not in predicted]
    if missing:
        raise ValueError(f"{path}: no predicted glosses for {len(missing)} sample(s), e.g. {missing[:3]}")
    return [dataclasses.replace(s, glosses=predicted[s.name]) for s in samples]
