"""Text side of Gloss2Text: sub-word tokenizers and the forms texts are scored in.

Two tokenizers share one small interface (`TextTokenizer`), laid out like mBART's vocabulary
(`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, plus language-code tokens such as `de_DE`):
- `SentencePieceTokenizer`: a SentencePiece model trained on the training split (from scratch).
- `MBartTextTokenizer`: the tokenizer of a local mBART checkpoint (e.g. `mbart-large-cc25`),
  optionally restricted to the ids kept by vocabulary pruning (`kept_ids`: new id -> old id).

Scoring forms (`scoring_form`): German output is brought to the corpus' tokenised form (lower-case
words, punctuation as separate tokens, single spaces); Chinese is scored per character.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Iterable, Literal, Sequence

from common.files import atomic_write_json

log = logging.getLogger(__name__)

TOKENIZER_FILE = "text_tokenizer.json"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
WORD_BOUNDARY = "\u2581"  # SentencePiece's (and mBART's) word-start mark, a piece of its own before unknown letters
ScoringLevel = Literal["word", "char"]


class TextTokenizer:
    """Text <-> sub-word ids. Ids of `SPECIAL_TOKENS` are fixed (mBART's layout)."""

    bos_id, pad_id, eos_id, unk_id = BOS_ID, PAD_ID, EOS_ID, UNK_ID
    languages: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Sub-word ids of `text`, without special tokens."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special and language tokens are dropped."""
        raise NotImplementedError

    def lang_id(self, code: str) -> int:
        """Id of a language-code token such as `de_DE`."""
        raise NotImplementedError

    def piece(self, token_id: int) -> str:
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    def special_ids(self) -> frozenset[int]:
        """Ids of `<s>`, `<pad>`, `</s>`, `<unk>` and the language codes."""
        if "_special_ids" not in self.__dict__:
            self._special_ids = frozenset({self.bos_id, self.pad_id, self.eos_id, self.unk_id, *(self.lang_id(c) for c in self.languages)})
        return self._special_ids


class SentencePieceTokenizer(TextTokenizer):
    """A SentencePiece model with mBART's special ids and language codes as user symbols."""

    MODEL_FILE = "spm.model"

    def __init__(self, model_file: str | Path, languages: Sequence[str]):
        import sentencepiece as spm

        self.model_file = Path(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        ids = (self.sp.bos_id(), self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id())
        if ids != (BOS_ID, PAD_ID, EOS_ID, UNK_ID):
            raise ValueError(f"{model_file}: special ids (bos, pad, eos, unk) are {ids}, expected (0, 1, 2, 3)")
        self.languages = tuple(languages)
        self._lang = {c: self.sp.piece_to_id(c) for c in self.languages}
        absent = [c for c, i in self._lang.items() if i == UNK_ID]
        if absent:
            raise ValueError(f"{model_file}: language code(s) {absent} are not pieces of the model")

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        directory: str | Path,
        *,
        vocab_size: int,
        languages: Sequence[str],
        model_type: Literal["unigram", "bpe", "word", "char"] = "unigram",
        character_coverage: float = 1.0,
    ) -> "SentencePieceTokenizer":
        """Train on `texts` (the training split) and save `<directory>/spm.model`.

        `vocab_size` is an upper bound (small corpora may yield fewer pieces). Normalisation is the
        identity, so decoding gives back the corpus' characters exactly (NFKC would turn Chinese
        full-width punctuation into ASCII and change the character-level scores).
        """
        import sentencepiece as spm

        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError("no training texts for the SentencePiece model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        prefix = directory / "spm.tmp"
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name="identity",
            bos_id=BOS_ID,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            user_defined_symbols=list(languages),
            num_threads=1,
            minloglevel=2,
        )
        Path(f"{prefix}.model").replace(directory / cls.MODEL_FILE)
        Path(f"{prefix}.vocab").unlink(missing_ok=True)
        tok = cls(directory / cls.MODEL_FILE, languages)
        tok.save(directory)
        return tok

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        specials = self.special_ids()
        return self.sp.decode([int(i) for i in ids if int(i) not in specials])

    def lang_id(self, code: str) -> int:
        if code not in self._lang:
            raise KeyError(f"language code {code!r} is not in the tokenizer (has {list(self.languages)})")
        return self._lang[code]

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.model_file.resolve() != (directory / self.MODEL_FILE).resolve():
            shutil.copyfile(self.model_file, directory / self.MODEL_FILE)
        _write_json(directory / TOKENIZER_FILE, {"kind": "sentencepiece", "model_file": self.MODEL_FILE, "languages": list(self.languages)})


class MBartTextTokenizer(TextTokenizer):
    """The tokenizer of a local mBART checkpoint, optionally pruned.

    kept_ids: after pruning, `kept_ids[new_id] = old_id` (sorted, specials first); None means the
    full vocabulary. Text pieces outside the kept ids encode to `<unk>`.
    """

    def __init__(self, hf_tokenizer, kept_ids: Sequence[int] | None = None):
        self.hf = hf_tokenizer
        self.languages = tuple(getattr(hf_tokenizer, "lang_code_to_id", {}) or ())
        full = len(hf_tokenizer)
        if kept_ids is not None:
            kept_ids = [int(i) for i in kept_ids]
            if kept_ids[:4] != [0, 1, 2, 3]:
                raise ValueError("kept_ids must start with the special ids 0, 1, 2, 3")
            if sorted(set(kept_ids)) != kept_ids or kept_ids[-1] >= full:
                raise ValueError(f"kept_ids must be sorted, unique and < {full}")
        self.kept_ids = kept_ids
        self._old2new = {o: n for n, o in enumerate(kept_ids)} if kept_ids is not None else None
        for name, want in (("bos", BOS_ID), ("pad", PAD_ID), ("eos", EOS_ID), ("unk", UNK_ID)):
            got = getattr(hf_tokenizer, f"{name}_token_id")
            if got != want:
                raise ValueError(f"mBART tokenizer: {name} id is {got}, expected {want}")

    @classmethod
    def from_pretrained(cls, directory: str | Path, kept_ids: Sequence[int] | None = None) -> "MBartTextTokenizer":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(directory), local_files_only=True), kept_ids)

    def __len__(self) -> int:
        return len(self.kept_ids) if self.kept_ids is not None else len(self.hf)

    def old_ids(self, text: str) -> list[int]:
        """Ids in the full (unpruned) vocabulary, without special tokens."""
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def encode(self, text: str) -> list[int]:
        ids = self.old_ids(text)
        if self._old2new is None:
            return ids
        return [self._old2new.get(i, UNK_ID) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        specials = self.special_ids()
        ids = [int(i) for i in ids if int(i) not in specials]
        if self.kept_ids is not None:
            ids = [self.kept_ids[i] for i in ids]
        return self.hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def lang_id(self, code: str) -> int:
        old = self.hf.convert_tokens_to_ids(code)
        if code not in self.languages or old is None:
            raise KeyError(f"language code {code!r} is not in the mBART tokenizer")
        return old if self._old2new is None else self._old2new[old]

    def piece(self, token_id: int) -> str:
        old = token_id if self.kept_ids is None else self.kept_ids[token_id]
        return self.hf.convert_ids_to_tokens(old)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(directory / "hf_tokenizer"))
        _write_json(directory / TOKENIZER_FILE, {"kind": "mbart", "hf_dir": "hf_tokenizer", "kept_ids": self.kept_ids})


def load_text_tokenizer(directory: str | Path) -> TextTokenizer:
    """Load what `TextTokenizer.save` wrote."""
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no text tokenizer here")
    spec = json.loads(path.read_text())
    if spec.get("kind") == "sentencepiece":
        return SentencePieceTokenizer(directory / spec["model_file"], spec["languages"])
    if spec.get("kind") == "mbart":
        return MBartTextTokenizer.from_pretrained(directory / spec["hf_dir"], spec.get("kept_ids"))
    raise ValueError(f"{path}: unknown tokenizer kind {spec.get('kind')!r}")


def pruned_vocabulary(tokenizer: MBartTextTokenizer, texts: Iterable[str], *, extra_ids: Iterable[int] = ()) -> list[int]:
    """Old ids kept by vocabulary pruning: the special and language-code tokens, `<mask>` if any,
    and every sub-word id that occurs in `texts` (corpus texts and lower-cased glosses). Sorted, so
    the specials keep ids 0..3."""
    if tokenizer.kept_ids is not None:
        raise ValueError("tokenizer is already pruned")
    keep = set(tokenizer.special_ids()) | set(extra_ids)
    mask = getattr(tokenizer.hf, "mask_token_id", None)
    if mask is not None:
        keep.add(mask)
    for text in texts:
        keep.update(tokenizer.old_ids(text))
    return sorted(keep)


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_json(path, payload, indent=None)


_GERMAN_PUNCT = re.compile(r"(?<=\S)([.,!?;:])(?=\s|$)")


def scoring_form(text: str, level: ScoringLevel) -> str:
    """The form a hypothesis or reference is scored in.

    word: the corpus' tokenised form — single spaces, sentence punctuation split off the word it
    follows (`morgen.` -> `morgen .`); the PHOENIX-2014T texts are already in this form.
    char: characters, whitespace removed (Chinese); scoring splits them.
    """
    if level == "word":
        return " ".join(_GERMAN_PUNCT.sub(r" \1", text).split())
    if level == "char":
        return "".join(text.split())
    raise ValueError(f"unknown scoring level {level!r} (expected 'word' or 'char')")
