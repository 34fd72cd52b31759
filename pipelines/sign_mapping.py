"""Cross-lingual sign mapping (Wei & Chen, ICCV 2023): from scores of the primary language's classes
for each auxiliary sign to the mapping table, the relabelled auxiliary annotations, the accuracy
against a known mapping, and the figure of the most confident pairs.

Each strategy gives every auxiliary sign a score vector over the primary classes (summing to 1):

    class     the mean over the sign's clips of the primary head's softmax (the paper's default)
    instance  each clip predicted on its own (argmax of the primary head's softmax); a primary
              class's score is the share of the sign's clips predicted as it: a majority vote whose
              confidence is how much the clips agree (the mean probability would be close to the
              class-level score and say nothing the class level does not)
    weights   the row softmax of W_aux W_primaryᵀ, the two heads' weight matrices without biases
              (models.islr.head_similarity); one row per auxiliary class of the ISLR model

The best primary class is the argmax (ties: the class listed first), its score the confidence. An
auxiliary sign whose confidence is >= `threshold` is relabelled to that primary gloss; any other
keeps its own label, written `<language>:<gloss>` so it stays a class of its own beside the primary
glosses. threshold 1.0 maps nothing, not even a sign of confidence exactly 1: the multi-task
baseline (the auxiliary data keeps its labels and its own classifier).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Strategy = Literal["class", "instance", "weights"]
STRATEGIES: tuple[str, ...] = ("class", "instance", "weights")


@dataclass(frozen=True)
class SignMapping:
    """One row of the mapping table. primary_gloss: the best primary class (None when the sign has
    no scores: no clips, or not a class of the auxiliary head); label: what its annotations become."""

    aux_gloss: str
    primary_gloss: str | None
    confidence: float
    clips: int
    mapped: bool
    label: str


def own_label(language: str, gloss: str) -> str:
    """The label an unmapped auxiliary gloss keeps: `<language>:<gloss>`."""
    return f"{language}:{gloss}"


def _group(glosses: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct glosses (sorted) and each clip's index among them."""
    signs, inverse = np.unique(np.asarray(glosses, dtype=object).astype(str), return_inverse=True)
    return [str(s) for s in signs], inverse.reshape(-1)


def class_scores(probs: np.ndarray, glosses: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class level. probs (N, V): the primary head's softmax for N auxiliary clips; glosses (N,)
    their auxiliary glosses -> signs (S,) sorted, scores (S, V) the mean softmax of each sign's
    clips, clips (S,) how many."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) != len(glosses):
        raise ValueError(f"probs {probs.shape} and {len(glosses)} glosses: need (N, V) with one gloss per clip")
    signs, inverse = _group(glosses)
    clips = np.bincount(inverse, minlength=len(signs))
    sums = np.zeros((len(signs), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    return signs, sums / np.maximum(clips, 1)[:, None], clips


def instance_scores(probs: np.ndarray, glosses: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Instance level: as `class_scores`, but each clip votes for its argmax (ties: the first class)
    and a sign's score of a primary class is the share of its clips voting for it."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) != len(glosses):
        raise ValueError(f"probs {probs.shape} and {len(glosses)} glosses: need (N, V) with one gloss per clip")
    votes = np.zeros_like(probs)
    votes[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return class_scores(votes, glosses)


def mapping_table(signs: Sequence[str], scores: np.ndarray, clips: Sequence[int], primary_classes: Sequence[str], *,
                  threshold: float, language: str, other_signs: dict[str, int] | None = None) -> list[SignMapping]:
    """The mapping table, sorted by auxiliary gloss. signs (S,) with scores (S, V) over
    `primary_classes` (V,) and their clip counts; `other_signs`: auxiliary glosses without scores
    and their clip counts (kept, confidence 0). `language`: the auxiliary language (the prefix of kept labels)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold}: must be in [0, 1] (1.0: map nothing)")
    scores = np.asarray(scores, np.float64).reshape(len(signs), len(primary_classes))
    rows = {}
    for sign, row, n in zip(signs, scores, clips):
        best = int(row.argmax())
        confidence = float(row[best])
        mapped = threshold < 1.0 and confidence >= threshold
        rows[sign] = SignMapping(sign, primary_classes[best], confidence, int(n), mapped,
                                 primary_classes[best] if mapped else own_label(language, sign))
    for sign, n in (other_signs or {}).items():
        if sign not in rows:
            rows[sign] = SignMapping(sign, None, 0.0, int(n), False, own_label(language, sign))
    return [rows[s] for s in sorted(rows)]


def relabel(glosses: str | Sequence[str], table: Sequence[SignMapping], language: str) -> list[str]:
    """An auxiliary gloss sequence with each gloss replaced by its label in `table` (a gloss the
    table lacks keeps its own label)."""
    labels = {m.aux_gloss: m.label for m in table}
    tokens = glosses.split() if isinstance(glosses, str) else list(glosses)
    return [labels.get(g, own_label(language, g)) for g in tokens]


def _percent(k: int, n: int) -> float | None:
    return 100.0 * k / n if n else None


def mapping_accuracy(table: Sequence[SignMapping], true_pairs: dict[str, str]) -> dict:
    """The table against the true pairs {auxiliary gloss: primary gloss} (the synthetic corpus's
    mapping.json). Signs of the table not in `true_pairs` are the unshared ones. Percentages:
    shared_accuracy: truly shared signs whose best primary class is the true one (a shared sign
    missing from the table, or without scores, counts as wrong: `shared_without_scores`);
    shared_mapped_correct: of the shared signs, mapped (above the threshold) to the true one;
    unshared_mapped_share: unshared signs mapped above the threshold; mapped_precision: of the
    mapped signs, those mapped to their true primary sign (None when nothing is mapped)."""
    rows = {m.aux_gloss: m for m in table}
    shared = sorted(true_pairs)
    correct = [g for g in shared if g in rows and rows[g].primary_gloss == true_pairs[g]]
    unshared = [m for m in table if m.aux_gloss not in true_pairs]
    mapped = [m for m in table if m.mapped]
    good = [m for m in mapped if true_pairs.get(m.aux_gloss) == m.primary_gloss]
    return {
        "shared_signs": len(shared),
        "shared_correct": len(correct),
        "shared_accuracy": _percent(len(correct), len(shared)),
        "shared_without_scores": sorted(g for g in shared if g not in rows or rows[g].primary_gloss is None),
        "shared_mapped_correct": _percent(sum(rows[g].mapped for g in correct), len(shared)),
        "unshared_signs": len(unshared),
        "unshared_mapped": sum(m.mapped for m in unshared),
        "unshared_mapped_share": _percent(sum(m.mapped for m in unshared), len(unshared)),
        "mapped_signs": len(mapped),
        "mapped_precision": _percent(len(good), len(mapped)),
        "wrong": {g: rows[g].primary_gloss if g in rows else None for g in shared if g not in correct},
    }


# ---- the figure of the most confident pairs -------------------------------------------------------------------


def strip_frames(frames: np.ndarray, count: int, gap: int = 2) -> np.ndarray:
    """`count` evenly spaced frames (T, H, W, 3) uint8 of a clip side by side, `gap` grey columns
    between them -> (H, count*W + (count-1)*gap, 3)."""
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    spacer = np.full((frames.shape[1], gap, 3), 128, np.uint8)
    parts = [p for i in idx for p in (spacer, frames[i])][1:]
    return np.concatenate(parts, axis=1)


def pairs_figure(pairs: Sequence[dict], *, frames: int = 4) -> bytes:
    """PNG bytes: one row per pair, the auxiliary clip's frame strip beside the primary clip's.
    pairs: {"aux_gloss", "aux_frames" (T, H, W, 3) uint8, "primary_gloss", "primary_frames",
    "confidence", "aux_language", "primary_language"} and optionally "mapped" (False: "kept" in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(pairs))
    fig, axes = plt.subplots(n, 2, figsize=(2.0 * frames, 1.6 * n + 0.4), squeeze=False)
    for ax_row, p in zip(axes, pairs):
        for ax, side in zip(ax_row, ("aux", "primary")):
            ax.imshow(strip_frames(p[f"{side}_frames"], frames))
            ax.set_title(f"{p[f'{side}_language']}: {p[f'{side}_gloss']}"
                         + (f"  ({p['confidence']:.2f}{'' if p.get('mapped', True) else ', kept'})" if side == "aux" else ""),
                         fontsize=9)
    for ax in axes.flat:  # no ticks; the frame around each strip stays
        ax.set_xticks([])
        ax.set_yticks([])
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no pairs", ha="center", va="center")
    fig.suptitle("auxiliary sign  ->  primary sign", fontsize=10)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
