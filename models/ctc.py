"""CTC loss with infeasible-sample accounting, greedy decoding and prefix beam search.

Conventions: blank = 0 (pipelines/vocabulary.py), log-probabilities batch-major (B, T, V),
valid lengths (B,). Decoders return gloss id lists; with `merge=True` (default) consecutive equal
ids are merged afterwards, as the papers' evaluation does (`itertools.groupby` on the decoder
output, so "A blank A" decodes to [A]).

Beam search is the standard CTC prefix beam search (blank / non-blank probability per prefix,
prefixes ranked by their total probability, the `beam_width` = K best kept after each frame),
compiled with numba, one utterance at a time (a batch is a plain loop; the kernels release the
GIL). It returns what the textbook algorithm, which extends every beam by every class, returns
(tests/test_ctc.py checks it against one), with three shortcuts that do not change the result:
- each frame only the K + 1 most probable non-blank classes start new prefixes: an extension of
  a beam by any other class is beaten by at least K candidates (that beam extended by K of those
  classes, or, where such an extension is already in the beam, that prefix, which receives at
  least that mass); the mass flowing into prefixes already in the beam is added for every class;
- a beam's extensions are tried in decreasing class probability and stop at the first that
  cannot enter the K best so far;
- the frame's top classes are found in one pass that skips blocks of 64 classes none of which
  beats the current K+1-th.
Prefixes are nodes of a trie, found again through a hash table keyed by (parent node, label), so
equal prefixes are recognised exactly (no hash of the label sequence is trusted). Candidates of
equal probability are kept in the order: kept prefixes before new ones, by beam, then by class
probability and class id. Log-probabilities are read as float32 and summed in float64.

The beam score of a prefix only counts the alignments that stayed in the beam, so the standard
algorithm can return a sequence less probable than the greedy (best-path) one (seen in ~3% of
tiny random cases with beam 5). With `rescore` (default), where the greedy sequence differs from
the best beam both are scored with their exact CTC probability (forward algorithm) and the more
probable is returned; `rescore=False` gives the plain prefix beam search (the algorithm of
TensorFlow's decoder, which the papers' code uses).

numba compiles the kernels on their first call in a process and caches them on disk
(`cache=True`): in models/__pycache__, or where that is not writable numba's user-wide cache
(~/.cache/numba), or `$NUMBA_CACHE_DIR` when set. With no writable cache directory the module
still imports and compiles on every start (see docs/PERFORMANCE.md for the times).
"""

from __future__ import annotations

import math
import warnings
from itertools import groupby
from typing import NamedTuple, Sequence

import numba
import numpy as np
import torch
import torch.nn.functional as F


class CTCLossResult(NamedTuple):
    loss: torch.Tensor  # scalar: sum of feasible samples' losses / B
    per_sample: torch.Tensor  # (B,), 0 for infeasible samples
    infeasible: torch.Tensor  # (B,) bool


def min_ctc_length(labels: torch.Tensor, label_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest frames that can emit each label sequence: its length + its adjacent repeats."""
    if labels.shape[1] < 2:
        return label_lengths.clone()
    pos = torch.arange(1, labels.shape[1], device=labels.device)[None, :]
    repeats = (labels[:, 1:] == labels[:, :-1]) & (pos < label_lengths[:, None])
    return label_lengths + repeats.sum(1)


def ctc_loss(log_probs: torch.Tensor, input_lengths: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor, blank: int = 0) -> CTCLossResult:
    """CTC loss of (B, T, V) log-probs against padded labels (B, L) with lengths (B,).

    Samples whose labels need more frames than they have are left out (their loss is 0) and
    flagged in `infeasible`, so the caller can count and report them; numerically infinite
    losses are zeroed too (`zero_infinity`). The loss is the sum over samples divided by B, as
    the papers' code does.
    """
    input_lengths, label_lengths = input_lengths.long(), label_lengths.long()
    infeasible = min_ctc_length(labels, label_lengths) > input_lengths
    per_sample = F.ctc_loss(log_probs.transpose(0, 1).float(), labels.long(), input_lengths, label_lengths,
                            blank=blank, reduction="none", zero_infinity=True)
    per_sample = per_sample.masked_fill(infeasible, 0.0)
    return CTCLossResult(per_sample.sum() / log_probs.shape[0], per_sample, infeasible)


def merge_repeats(ids: Sequence[int]) -> list[int]:
    """Merge runs of equal ids: [5, 5, 7, 5] -> [5, 7, 5]."""
    return [k for k, _ in groupby(ids)]


def _as_tensor(log_probs, lengths) -> tuple[torch.Tensor, np.ndarray]:
    lp = torch.as_tensor(log_probs).detach().float()
    if lp.ndim != 3:
        raise ValueError(f"log_probs must be (B, T, V), got {tuple(lp.shape)}")
    n = np.full(lp.shape[0], lp.shape[1]) if lengths is None else torch.as_tensor(lengths).cpu().numpy().astype(np.int64)
    if len(n) != lp.shape[0] or (n < 0).any() or (n > lp.shape[1]).any():
        raise ValueError(f"lengths {n.tolist()} do not fit log_probs of shape {tuple(lp.shape)}")
    return lp, n


def _as_numpy(log_probs, lengths) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, V) log-probs as a C-contiguous float32 CPU array (no copy when they already are one)
    and the valid lengths as int64 (B,)."""
    if isinstance(log_probs, torch.Tensor):
        log_probs = log_probs.detach().to("cpu", torch.float32).numpy()
    lp = np.ascontiguousarray(log_probs, dtype=np.float32)
    if lp.ndim != 3:
        raise ValueError(f"log_probs must be (B, T, V), got {lp.shape}")
    B, T = lp.shape[:2]
    if lengths is None:
        return lp, np.full(B, T, dtype=np.int64)
    n = (lengths.cpu().numpy() if isinstance(lengths, torch.Tensor) else np.asarray(lengths)).astype(np.int64).ravel()
    if len(n) != B or (B and (n.min() < 0 or n.max() > T)):
        raise ValueError(f"lengths {n.tolist()} do not fit log_probs of shape {lp.shape}")
    return lp, n


def greedy_decode(log_probs, lengths=None, blank: int = 0, merge: bool = True) -> list[list[int]]:
    """Best path: per-frame argmax, repeats collapsed, blanks removed. (B, T, V) -> B id lists."""
    lp, n = _as_tensor(log_probs, lengths)
    out = _collapse(lp.argmax(-1).cpu().numpy(), n, blank)
    return [merge_repeats(s) for s in out] if merge else out


def _collapse(best: np.ndarray, n: np.ndarray, blank: int) -> list[list[int]]:
    """Per-frame class ids (B, T) -> CTC-collapsed sequences (repeats merged, blanks removed)."""
    keep = (best != blank) & (best != np.concatenate([np.full((len(best), 1), -1), best[:, :-1]], 1))
    keep &= np.arange(best.shape[1])[None, :] < n[:, None]
    return [row[k].tolist() for row, k in zip(best, keep)]


# ---------------------------------------------------------------------------------------------
# Prefix beam search and the exact CTC probability, compiled with numba (one utterance at a time,
# a plain loop over the batch). Log-probabilities are read as float32, summed in float64.

def cached_njit(fn, where: str = "models/ctc.py"):
    """`numba.njit(cache=True, nogil=True)`, or without the on-disk cache where no cache directory
    is writable (numba then refuses `cache=True` at decoration time; it compiles on every start)."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        warnings.warn(f"{where}: no writable numba cache directory (set NUMBA_CACHE_DIR); its kernels are "
                      "compiled again in every process", RuntimeWarning)
        return numba.njit(nogil=True)(fn)


_njit = cached_njit


@_njit
def _logaddexp(a, b):
    if a < b:
        a, b = b, a
    if b == -np.inf:
        return a
    return a + math.log1p(math.exp(b - a))


@_njit
def _ctc_log_likelihood(lp, n, seq, L, blank):
    """Exact log P(seq[:L] | lp[:n]) by the CTC forward algorithm. lp (T, V) float32."""
    if n == 0:
        return 0.0 if L == 0 else -np.inf
    S = 2 * L + 1
    alpha = np.full(S, -np.inf)
    new = np.empty(S)
    alpha[0] = lp[0, blank]
    if L > 0:
        alpha[1] = lp[0, seq[0]]
    for t in range(1, n):
        for s in range(S):
            a = alpha[s]
            if s >= 1:
                a = _logaddexp(a, alpha[s - 1])
            if s % 2 == 1:
                j = s // 2
                if j >= 1 and seq[j] != seq[j - 1]:
                    a = _logaddexp(a, alpha[s - 2])
                new[s] = a + lp[t, seq[j]]
            else:
                new[s] = a + lp[t, blank]
        alpha, new = new, alpha
    return _logaddexp(alpha[S - 1], alpha[S - 2]) if L > 0 else alpha[0]


@_njit
def _offer(K, ns, score, pb, pnb, nd, frm, lab, s_score, s_pb, s_pnb, s_node, s_from, s_label):
    """Insert a candidate into the (score-sorted) list of the K best so far, after any equal
    score; returns the new list length."""
    if ns < K:
        j = ns
        ns += 1
    elif score > s_score[K - 1]:
        j = K - 1
    else:
        return ns
    while j > 0 and s_score[j - 1] < score:
        s_score[j], s_pb[j], s_pnb[j] = s_score[j - 1], s_pb[j - 1], s_pnb[j - 1]
        s_node[j], s_from[j], s_label[j] = s_node[j - 1], s_from[j - 1], s_label[j - 1]
        j -= 1
    s_score[j], s_pb[j], s_pnb[j], s_node[j], s_from[j], s_label[j] = score, pb, pnb, nd, frm, lab
    return ns


@_njit
def _prefix_beam_search(lp, n, K, blank, out, best_path):
    """CTC prefix beam search over lp[:n] (lp (T, V) float32), beam width K. Writes the best
    prefix's labels to `out` and the best path (per-frame argmax, first maximum, collapsed) to
    `best_path`; returns (prefix length, its beam log-probability, best path length)."""
    V = lp.shape[1]
    C = max(1, min(K + 1, V - 1))
    neg = -np.inf
    # Prefixes are nodes of a trie (node 0 = the empty prefix), one node per distinct prefix: a
    # hash table on (parent node, label) finds a prefix's node when it is extended again, so two
    # beams hold the same prefix exactly when they hold the same node.
    max_nodes = n * K + 1
    parent = np.empty(max_nodes, np.int64)
    label = np.empty(max_nodes, np.int64)
    parent[0], label[0] = -1, -1
    n_nodes = 1
    size = 4
    while size < 2 * max_nodes:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)

    node = np.zeros(K, np.int64)  # the beam: prefix node, P(ends in blank), P(ends in a label)
    pb = np.full(K, neg)
    pnb = np.full(K, neg)
    pb[0] = 0.0
    nb = 1
    tot = np.empty(K)
    in_beam = np.empty(K, np.int64)  # beam index of each beam's parent prefix, or -1
    # The K best candidates of a frame, best first: a kept prefix (s_node >= 0) or a new one
    # (s_node = -1: beam s_from + class s_label).
    s_score, s_pb, s_pnb = np.empty(K), np.empty(K), np.empty(K)
    s_node, s_from, s_label = np.empty(K, np.int64), np.empty(K, np.int64), np.empty(K, np.int64)
    top_c = np.empty(C, np.int64)
    top_v = np.empty(C)
    G, prev = 0, -1

    for t in range(n):
        row = lp[t]
        # The C most probable non-blank classes, ties to the lower class id. Once C are held, a
        # block of 64 classes is only looked at one by one if one of them beats the C-th.
        m = 0
        start = 0
        while start < V:
            end = min(start + 64, V)
            if m == C and end - start == 64:
                thr = np.float32(top_v[C - 1])
                above = 0
                for v in range(64):
                    above += row[start + v] > thr
                if above == 0:
                    start = end
                    continue
            for v in range(start, end):
                if v == blank:
                    continue
                x = np.float64(row[v])
                if m < C:
                    j = m
                    m += 1
                elif x > top_v[C - 1]:
                    j = C - 1
                else:
                    continue
                while j > 0 and top_v[j - 1] < x:
                    top_v[j], top_c[j] = top_v[j - 1], top_c[j - 1]
                    j -= 1
                top_v[j], top_c[j] = x, v
            start = end
        blank_lp = np.float64(row[blank])

        g = blank  # best path: the frame's argmax, the lower class id on a tie
        if m > 0 and (top_v[0] > blank_lp or (top_v[0] == blank_lp and top_c[0] < blank)):
            g = top_c[0]
        if g != blank and g != prev:
            best_path[G] = g
            G += 1
        prev = g

        for i in range(nb):
            tot[i] = _logaddexp(pb[i], pnb[i])
            in_beam[i] = -1
            p = parent[node[i]]
            if p >= 0:
                for j in range(nb):
                    if node[j] == p:
                        in_beam[i] = j
                        break
        ns = 0
        # Prefix unchanged: ends in blank, or repeats its last label, plus the mass flowing in
        # from its parent prefix if that is in the beam too.
        for i in range(nb):
            lab = label[node[i]]
            stay = neg
            if lab >= 0:
                stay = pnb[i] + row[lab]
                j = in_beam[i]
                if j >= 0:
                    stay = _logaddexp(stay, (pb[j] if label[node[j]] == lab else tot[j]) + row[lab])
            score = _logaddexp(tot[i] + blank_lp, stay)
            if score > neg:
                ns = _offer(K, ns, score, tot[i] + blank_lp, stay, node[i], i, lab,
                            s_score, s_pb, s_pnb, s_node, s_from, s_label)
        # New prefixes: beam i + one of the frame's top classes, unless that prefix is in the
        # beam. top_v is sorted, so once tot[i] + top_v[k] cannot enter the list, no later k can.
        for i in range(nb):
            lab = label[node[i]]
            for k in range(m):
                if ns == K and tot[i] + top_v[k] <= s_score[K - 1]:
                    break
                c = top_c[k]
                score = (pb[i] if c == lab else tot[i]) + top_v[k]
                if score == neg or (ns == K and score <= s_score[K - 1]):
                    continue
                dup = False
                for j in range(nb):
                    if in_beam[j] == i and label[node[j]] == c:
                        dup = True
                        break
                if not dup:
                    ns = _offer(K, ns, score, neg, score, -1, i, c, s_score, s_pb, s_pnb, s_node, s_from, s_label)
        if ns == 0:  # every candidate impossible (-inf inputs): keep the beams as they are
            continue
        for s in range(ns):
            if s_node[s] >= 0:
                continue
            p, c = node[s_from[s]], s_label[s]
            key = np.uint64(p) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(c)
            h = np.int64((key ^ (key >> np.uint64(31))) & np.uint64(mask))
            while table[h] >= 0 and not (parent[table[h]] == p and label[table[h]] == c):
                h = (h + 1) & mask
            if table[h] < 0:
                parent[n_nodes], label[n_nodes] = p, c
                table[h] = n_nodes
                n_nodes += 1
            s_node[s] = table[h]
        nb = ns
        node[:nb], pb[:nb], pnb[:nb] = s_node[:nb], s_pb[:nb], s_pnb[:nb]

    best_i, best = 0, neg
    for i in range(nb):
        s = _logaddexp(pb[i], pnb[i])
        if s > best:
            best_i, best = i, s
    length = 0
    v = node[best_i]
    while v > 0:
        length += 1
        v = parent[v]
    v = node[best_i]
    for i in range(length - 1, -1, -1):
        out[i] = label[v]
        v = parent[v]
    return length, best, G


@_njit
def _decode_batch(lp, lengths, K, blank, rescore, exact_scores, seqs, seq_len, scores):
    """Beam search (and rescoring) of every utterance of lp (B, T, V) float32 into seqs (B, T),
    seq_len (B,) and scores (B,)."""
    greedy = np.empty(lp.shape[1], np.int64)
    for b in range(lp.shape[0]):
        n = lengths[b]
        L, score, G = _prefix_beam_search(lp[b], n, K, blank, seqs[b], greedy)
        if rescore:
            differ = G != L
            for i in range(min(G, L)):
                differ |= greedy[i] != seqs[b, i]
            if differ or exact_scores:
                score = _ctc_log_likelihood(lp[b], n, seqs[b], L, blank)
            if differ:
                g_score = _ctc_log_likelihood(lp[b], n, greedy, G, blank)
                if g_score > score:
                    seqs[b, :G] = greedy[:G]
                    L, score = G, g_score
        seq_len[b], scores[b] = L, score


def sequence_log_likelihood(log_probs, lengths, utterance: Sequence[int], seqs: Sequence[Sequence[int]],
                            blank: int = 0) -> np.ndarray:
    """Exact log P(seqs[i] | utterance[i]'s log-probs) by the CTC forward algorithm. (B, T, V) -> (N,)."""
    lp, n = _as_numpy(log_probs, lengths)
    return np.array([_ctc_log_likelihood(lp[u], n[u], np.asarray(s, dtype=np.int64), len(s), blank)
                     for u, s in zip(utterance, seqs)], dtype=np.float64)


def beam_search_decode(log_probs, lengths=None, beam_width: int = 5, blank: int = 0, merge: bool = True,
                       rescore: bool = True, return_scores: bool = False):
    """CTC prefix beam search over (B, T, V) log-probabilities; returns B id lists (and, with
    `return_scores`, (B,) log-probabilities of the returned sequences: exact with `rescore`, the
    beam scores without). Tensors on a GPU are copied to the CPU (the search runs there)."""
    lp, n = _as_numpy(log_probs, lengths)
    B, T, V = lp.shape
    K = int(beam_width)
    if K < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    if not 0 <= blank < V:
        raise ValueError(f"blank {blank} is not a class of log_probs with {V} classes")
    seqs = np.empty((B, T), dtype=np.int64)
    seq_len = np.empty(B, dtype=np.int64)
    scores = np.empty(B, dtype=np.float64)
    _decode_batch(lp, n, K, int(blank), bool(rescore), bool(return_scores),
                  seqs, seq_len, scores)
    out = [row[:k].tolist() for row, k in zip(seqs, seq_len)]
    if merge:
        out = [merge_repeats(s) for s in out]
    return (out, scores) if return_scores else out
