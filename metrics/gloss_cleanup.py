"""Gloss clean-up applied to hypotheses and references before WER, as the papers' evaluation does.

The rules and their order follow the Python ports of the PHOENIX evaluation scripts in the
papers' public code (`clean_phoenix_2014_trans` / `clean_phoenix_2014` in neccam/slt
signjoey/phoenix_utils/phoenix_cleanup.py, copied unchanged into FangyunWei/SLRT
TwoStreamNetwork/utils/phoenix_cleanup.py). They are regexes over the whole gloss string, and
their quirks are kept on purpose so scores match the papers' tables:

- Spelled letters are joined by a fixed cascade of patterns that needs a space (or `+`) on
  both sides, so a sentence that is *only* two letters (`A B`) stays apart while `WETTER A B`
  becomes `WETTER A+B` and `A B C` becomes `A+B+C`; at the very start of a longer sentence the
  second pattern turns the first `+` back into a space (`A B C REGEN` → `A B+C REGEN`).
- PHOENIX-2014T strips `RAUM` after an all-capital stem at word boundaries
  (`\\b([A-Z]+)RAUM\\b`); PHOENIX-2014 strips it after any two capitals, anywhere
  (`([A-Z][A-Z])RAUM`).
- PHOENIX-2014 removes prefixes (`loc-`, `cl-`, `qu-`, `poss-`, `lh-`) anywhere in the string,
  rewrites any token *ending* in `ZEIGEN` (followed by a space or the end) to `…ZEIGEN-BILDSCHIRM`,
  and keeps `__ON__` / `__OFF__` (its references contain them too).
- Repetitions collapse through the repetition regex (all-capital tokens only) and then a final
  pass that merges any identical neighbouring tokens (`IM-VERLAUF IM-VERLAUF` → `IM-VERLAUF`).

Two deliberate differences from the ports, neither of which changes their output on
single-spaced input that their code accepts: whitespace is normalised first (so cleaning a
string equals cleaning its token list), and PHOENIX-2014 removes `__EPENTHESIS__` like the
other markers (the official sclite script drops it with `grep -v`) instead of failing the port's
assertion.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from itertools import groupby
from typing import Protocol, overload

_Rule = tuple[re.Pattern[str], str]


def _rules(*pairs: tuple[str, str]) -> tuple[_Rule, ...]:
    return tuple((re.compile(pattern), repl) for pattern, repl in pairs)


# Spelled letters: "A B C" → "A+B+C"; also SCH and NN. The same cascade for both corpora; the
# middle rule runs three times because each pass only joins non-overlapping pairs.
_JOIN_SPELLED = (
    (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),
    (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
    *[(r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2")] * 3,
    (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
    (r"([ +]NN) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) (NN[ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
)

# "REGEN REGEN" → "REGEN" for all-capital tokens not glued to letters, digits, _ or -; four
# passes (each pass merges non-overlapping pairs), with space runs squeezed before and after.
_COLLAPSE_REPEATS = (
    (r" +", " "),
    *[(r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])", r"\1")] * 4,
    (r" +", " "),
)

_PHOENIX2014T_RULES = _rules(
    # annotation markers: the three named ones anywhere, then any whole-word __X__ (__ON__, __OFF__, ...)
    (r"__LEFTHAND__", ""),
    (r"__EPENTHESIS__", ""),
    (r"__EMOTION__", ""),
    (r"\b__[^_ ]*__\b", ""),
    # prefixes and suffix at word boundaries
    (r"\bloc-([^ ]*)\b", r"\1"),
    (r"\bcl-([^ ]*)\b", r"\1"),
    (r"\b([^ ]*)-PLUSPLUS\b", r"\1"),
    # <LETTERS>RAUM → <LETTERS> (RAUM on its own stays)
    (r"\b([A-Z]+)RAUM\b", r"\1"),
    (r"WIE AUSSEHEN", "WIE-AUSSEHEN"),
    *_JOIN_SPELLED,
    *_COLLAPSE_REPEATS,
)

_PHOENIX2014_RULES = _rules(
    (r"loc-", ""),
    (r"cl-", ""),
    (r"qu-", ""),
    (r"poss-", ""),
    (r"lh-", ""),
    (r"S0NNE", "SONNE"),
    (r"HABEN2", "HABEN"),
    (r"__EMOTION__", ""),
    (r"__PU__", ""),
    (r"__LEFTHAND__", ""),
    (r"__EPENTHESIS__", ""),  # the port asserts it is absent; the official script drops it
    (r"WIE AUSSEHEN", "WIE-AUSSEHEN"),
    (r"ZEIGEN ", "ZEIGEN-BILDSCHIRM "),
    (r"ZEIGEN$", "ZEIGEN-BILDSCHIRM"),
    *_JOIN_SPELLED,
    (r"([A-Z][A-Z])RAUM", r"\1"),
    (r"-PLUSPLUS", ""),
    *_COLLAPSE_REPEATS,
)


class GlossCleanup(Protocol):
    """A clean-up function: a gloss string gives a string, a token sequence gives a token list."""

    @overload
    def __call__(self, glosses: str) -> str: ...

    @overload
    def __call__(self, glosses: Sequence[str]) -> list[str]: ...

    def __call__(self, glosses: str | Sequence[str]) -> str | list[str]: ...


def _accepts_tokens(fn: Callable[[str], str]) -> GlossCleanup:
    @wraps(fn)
    def wrapper(glosses: str | Sequence[str]) -> str | list[str]:
        if isinstance(glosses, str):
            return fn(" ".join(glosses.split()))
        tokens = list(glosses) if isinstance(glosses, Iterable) else None
        if tokens is None or not all(isinstance(g, str) for g in tokens):
            raise TypeError(
                f"{fn.__name__}: glosses must be a string or a sequence of strings, got {glosses!r:.80}"
            )
        return fn(" ".join(" ".join(tokens).split())).split()

    return wrapper  # type: ignore[return-value]


def _apply(rules: tuple[_Rule, ...], text: str) -> str:
    for pattern, repl in rules:
        text = pattern.sub(repl, text)
    return text


def _merge_neighbours(text: str) -> str:
    # Neighbours are merged on the single-space split (empty strings at the ends included)
    # before empty tokens are dropped, as the ports do.
    return " ".join(tok for tok, _ in groupby(text.split(" ")) if tok)


@_accepts_tokens
def clean_phoenix2014t(glosses: str) -> str:
    """PHOENIX-2014T clean-up (`clean_phoenix_2014_trans`): drop `__X__` markers, strip `loc-`,
    `cl-`, `-PLUSPLUS`, `<LETTERS>RAUM` → `<LETTERS>`, `WIE AUSSEHEN` → `WIE-AUSSEHEN`, join
    spelled letters with `+`, collapse repetitions."""
    return _merge_neighbours(_apply(_PHOENIX2014T_RULES, glosses))


@_accepts_tokens
def clean_phoenix2014(glosses: str) -> str:
    """PHOENIX-2014 clean-up (`clean_phoenix_2014`): strip `loc-`, `cl-`, `qu-`, `poss-`, `lh-`,
    `S0NNE` → `SONNE`, `HABEN2` → `HABEN`, drop `__EMOTION__`, `__PU__`, `__LEFTHAND__`
    (and `__EPENTHESIS__`),
    `…ZEIGEN` → `…ZEIGEN-BILDSCHIRM`, join spelled letters, `([A-Z][A-Z])RAUM` → stem, strip
    `-PLUSPLUS`, collapse repetitions. `__ON__` / `__OFF__` stay."""
    return _merge_neighbours(_apply(_PHOENIX2014_RULES, glosses))


@_accepts_tokens
def clean_csl_daily(glosses: str) -> str:
    """CSL-Daily is scored as annotated: whitespace normalisation only."""
    return glosses


_CLEANUPS: dict[str, GlossCleanup] = {
    "phoenix2014t": clean_phoenix2014t,
    "phoenix2014": clean_phoenix2014,
    "csl-daily": clean_csl_daily,
    # The generated corpus (pipelines.synthetic) has no annotation conventions to undo.
    "synthetic": clean_csl_daily,
}


def cleanup_for(corpus_name: str) -> GlossCleanup:
    """The clean-up function for a corpus name as configs give it (`CorpusConfig.name`)."""
    try:
        return _CLEANUPS[corpus_name]
    except KeyError:
        valid = ", ".join(repr(k) for k in sorted(_CLEANUPS))
        raise ValueError(f"no gloss clean-up for corpus {corpus_name!r}; valid names: {valid}") from None
