"""Beam search over an ensemble of Gloss2Text models (`models.translation.GlossToText`).

Models trained from different seeds on the same gloss vocabulary and text tokenizer make different
mistakes; decoding with the mean of their next-token probabilities is the classic machine-translation
ensemble. Each step, every model runs its decoder on the beams' last tokens (with its own key/value
cache) and the ensemble's log-probability of token v is log(mean_m p_m(v)).

The search follows Hugging Face's beam search as `GlossToText.translate` configures it, so a
one-model ensemble returns what `translate` returns:
- `2K` candidates per sentence each step; an `</s>` among the first `K` closes a hypothesis, scored
  (sum of log-probabilities) / (generated tokens incl. `</s>`) ** length_penalty;
- a sentence is done when it holds `K` closed hypotheses (early stopping); at `max_length - 1`
  decoder positions (the start token counts as one) `</s>` is forced;
- `K = 1` is greedy search (no length penalty).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from models.translation import GlossToText


class GlossToTextEnsemble(nn.Module):
    """Several `GlossToText` with the same gloss vocabulary and text vocabulary, decoded together.
    Offers the parts of `GlossToText`'s interface that decoding uses (`translate`,
    `set_unseen_glosses`, `tgt_lang_id`)."""

    def __init__(self, models: Sequence[GlossToText]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = models[0]
        for i, m in enumerate(models[1:], 1):
            for attr in ("tgt_lang_id", "src_lang_id", "eos_id", "pad_id"):
                if getattr(m, attr) != getattr(first, attr):
                    raise ValueError(f"ensemble member {i}: {attr} {getattr(m, attr)} differs from member 0's {getattr(first, attr)}")
            if m.config.vocab_size != first.config.vocab_size:
                raise ValueError(f"ensemble member {i}: text vocabulary of {m.config.vocab_size} ids, member 0 has {first.config.vocab_size}")
            if m.gloss_embedding.num_embeddings != first.gloss_embedding.num_embeddings:
                raise ValueError(f"ensemble member {i}: {m.gloss_embedding.num_embeddings} glosses, member 0 has "
                                 f"{first.gloss_embedding.num_embeddings}")
        self.members = nn.ModuleList(models)
        self.tgt_lang_id, self.eos_id, self.pad_id = first.tgt_lang_id, first.eos_id, first.pad_id

    def set_unseen_glosses(self, subwords: Sequence[Sequence[int]]) -> None:
        for m in self.members:
            m.set_unseen_glosses(subwords)

    @torch.no_grad()
    def translate(self, gloss_ids: torch.Tensor, gloss_lengths: torch.Tensor, *, num_beams: int = 5,
                  length_penalty: float = 1.0, max_length: int = 100) -> list[list[int]]:
        """gloss_ids (B, S) right-padded, gloss_lengths (B,) -> per sample the generated text ids
        without the start token and `</s>`."""
        return ensemble_beam_search(list(self.members), gloss_ids, gloss_lengths, num_beams=num_beams,
                                    length_penalty=length_penalty, max_length=max_length)


def next_token_log_probs(models: Sequence[GlossToText], tokens: torch.Tensor, encoded: list[tuple[torch.Tensor, torch.Tensor]],
                         caches: list[EncoderDecoderCache]) -> torch.Tensor:
    """One decoder step of every model: tokens (N, 1), each model's (encoder states (N, S, D), mask
    (N, S)) -> (N, V) float32 log of the mean of the models' next-token probabilities."""
    log_probs = []
    for model, (states, mask), cache in zip(models, encoded, caches):
        hidden = model.mbart.model.decoder(input_ids=tokens, encoder_hidden_states=states, encoder_attention_mask=mask,
                                           cache=cache, use_cache=True).last_hidden_state[:, -1]
        log_probs.append(F.log_softmax(model.output_logits(hidden).float(), dim=-1))
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


@torch.no_grad()
def ensemble_beam_search(models: Sequence[GlossToText], gloss_ids: torch.Tensor, gloss_lengths: torch.Tensor, *,
                         num_beams: int = 5, length_penalty: float = 1.0, max_length: int = 100) -> list[list[int]]:
    """Beam search (module docstring) with the mean of `models`' next-token probabilities.
    gloss_ids (B, S), gloss_lengths (B,) -> per sample the best hypothesis' ids (no start, no `</s>`)."""
    if num_beams < 1 or max_length < 2:
        raise ValueError(f"need num_beams >= 1 and max_length >= 2, got {num_beams} and {max_length}")
    first = models[0]
    eos, pad, K = first.eos_id, first.pad_id, num_beams
    B = gloss_ids.shape[0]
    encoded = []
    for model in models:
        embeds, mask = model.embed_source(gloss_ids, gloss_lengths)
        states = model.mbart.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        encoded.append((states.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)))
    caches = [EncoderDecoderCache(DynamicCache(), DynamicCache()) for _ in models]
    device = gloss_ids.device
    tokens = torch.full((B * K, 1), first.tgt_lang_id, dtype=torch.long, device=device)
    generated = torch.empty((B * K, 0), dtype=torch.long, device=device)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(1, max_length):
        log_probs = next_token_log_probs(models, tokens, encoded, caches)  # (B*K, V)
        if step == max_length - 1:
            forced = torch.full_like(log_probs, float("-inf"))
            forced[:, eos] = 0.0
            log_probs = forced
        V = log_probs.shape[-1]
        candidates = (scores[:, :, None] + log_probs.view(B, K, V)).view(B, K * V)
        top_scores, top_ids = candidates.topk(2 * K, dim=1)
        top_beams, top_tokens = (top_ids // V).tolist(), (top_ids % V).tolist()
        top_scores_list = top_scores.tolist()
        next_beams, next_tokens, next_scores = [], [], []
        for b in range(B):
            chosen: list[tuple[int, int, float]] = []
            if not done[b]:
                for rank, (beam, token, score) in enumerate(zip(top_beams[b], top_tokens[b], top_scores_list[b])):
                    if token == eos:
                        if rank < K:
                            ids = generated[b * K + beam].tolist()
                            finished[b].append((score / (len(ids) + 1) ** length_penalty, ids))
                    else:
                        chosen.append((beam, token, score))
                    if len(chosen) == K:
                        break
                done[b] = len(finished[b]) >= K
            if done[b]:
                chosen = [(k, pad, 0.0) for k in range(K)]
            next_beams += [b * K + beam for beam, _, _ in chosen]
            next_tokens += [token for _, token, _ in chosen]
            next_scores.append([score for _, _, score in chosen])
        if all(done):
            break
        beam_index = torch.tensor(next_beams, dtype=torch.long, device=device)
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)[:, None]
        generated = torch.cat([generated[beam_index], tokens], dim=1)
        scores = torch.tensor(next_scores, device=device)
        for cache in caches:
            cache.reorder_cache(beam_index)
    # `</s>` forced at the last step closes every live beam, so each sentence holds >= 1 hypothesis
    return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
