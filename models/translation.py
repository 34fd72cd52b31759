"""Gloss2Text translation network: `transformers.MBartForConditionalGeneration` with glosses on the
source side.

Source: gloss ids -> gloss embedding table (x embed_scale, as mBART scales its token embeddings),
followed by the embeddings of `</s>` and the source language token (mBART's `X </s> <lang>`).
Target: `<lang> y_1 .. y_n` in, `y_1 .. y_n </s>` out (labels; padding ignored by the loss).

Two ways in:
- `build_scratch_mbart(vocab_size, ...)`: an mBART of any size with random weights (trained here).
- `prune_mbart_checkpoint(src_dir, out_dir, texts, glosses)`: a local pretrained mBART (the papers
  use mbart-large-cc25) cut down to the corpus' sub-words, with a gloss table initialised to the
  mean of each gloss's sub-token embeddings; `load_pruned_mbart(out_dir)` loads it back.

Gloss embedding modes: "table" is a free table (the papers' way); "subwords" computes each gloss's
embedding as the mean of its sub-token rows of the shared (text) embedding plus a learned residual,
so glosses and the words they name share parameters (useful when training from scratch on little
data).

Glosses never seen in training (`set_unseen_glosses`): ids from `num_glosses` on embed as the mean
of their spelling's sub-token rows of the shared embedding, computed from the current weights at
every call (the same rule "subwords" applies to known glosses, without a residual).
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, MBartConfig, MBartForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from common.files import atomic_directory

log = logging.getLogger(__name__)

GlossEmbeddingMode = Literal["table", "subwords"]
GLOSS_EMBEDDING_FILE = "gloss_embeddings.pt"


def build_scratch_mbart(
    vocab_size: int,
    *,
    d_model: int = 256,
    encoder_layers: int = 3,
    decoder_layers: int = 3,
    attention_heads: int = 4,
    ffn_dim: int = 1024,
    dropout: float = 0.3,
    attention_dropout: float = 0.1,
    activation_dropout: float = 0.1,
    encoder_layerdrop: float = 0.0,
    decoder_layerdrop: float = 0.0,
    max_position_embeddings: int = 512,
    scale_embedding: bool = True,
    seed: int = 0,
) -> MBartForConditionalGeneration:
    """A randomly initialised mBART (pre-LN, GELU, learned positions, tied embeddings) with the
    special ids of `pipelines.text_tokenizer` (<s>=0, <pad>=1, </s>=2)."""
    config = MBartConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=attention_heads,
        decoder_attention_heads=attention_heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        dropout=dropout,
        attention_dropout=attention_dropout,
        activation_dropout=activation_dropout,
        encoder_layerdrop=encoder_layerdrop,
        decoder_layerdrop=decoder_layerdrop,
        max_position_embeddings=max_position_embeddings,
        scale_embedding=scale_embedding,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        forced_eos_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return MBartForConditionalGeneration(config)


def embedding_bags(bags: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> (flat ids, start offsets) as `F.embedding_bag` takes them; [] -> two empty tensors."""
    lengths = torch.tensor([len(b) for b in bags], dtype=torch.long)
    offsets = torch.cumsum(lengths, 0) - lengths
    return torch.tensor([int(i) for b in bags for i in b], dtype=torch.long), offsets


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """(KL(p||q) + KL(q||p)) / 2 between the softmaxes of logits (N, V), mean over the N rows."""
    log_p, log_q = F.log_softmax(logits_p, dim=-1), F.log_softmax(logits_q, dim=-1)
    return 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1).mean()


class GlossToText(nn.Module):
    """mBART translating gloss sequences.

    num_glosses: size of the gloss vocabulary (`pipelines.vocabulary.GlossVocabulary`, pad id 1).
    gloss_subwords: per gloss id, its sub-token ids in mBART's vocabulary (needed for mode
        "subwords" and for `init_gloss_table_from_subwords`).
    """

    gloss_pad_id = 1

    def __init__(
        self,
        mbart: MBartForConditionalGeneration,
        num_glosses: int,
        *,
        src_lang_id: int,
        tgt_lang_id: int,
        gloss_subwords: Sequence[Sequence[int]] | None = None,
        gloss_embedding: GlossEmbeddingMode = "table",
    ):
        super().__init__()
        self.mbart = mbart
        cfg = mbart.config
        self.src_lang_id, self.tgt_lang_id = int(src_lang_id), int(tgt_lang_id)
        self.pad_id, self.eos_id = cfg.pad_token_id, cfg.eos_token_id
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
        self.gloss_embedding_mode = gloss_embedding
        self.gloss_subwords = [list(map(int, s)) for s in gloss_subwords] if gloss_subwords is not None else None
        self.gloss_embedding = nn.Embedding(num_glosses, cfg.d_model, padding_idx=self.gloss_pad_id)
        if gloss_embedding == "subwords":
            if self.gloss_subwords is None or len(self.gloss_subwords) != num_glosses:
                raise ValueError("gloss_embedding='subwords' needs gloss_subwords for every gloss id")
            ids, offsets = embedding_bags(self.gloss_subwords)
            self.register_buffer("_subword_ids", ids, persistent=False)
            self.register_buffer("_subword_offsets", offsets, persistent=False)
            nn.init.zeros_(self.gloss_embedding.weight)  # the learned residual starts at 0
        elif gloss_embedding != "table":
            raise ValueError(f"unknown gloss_embedding mode {gloss_embedding!r}")
        elif self.gloss_subwords is not None:
            self.init_gloss_table_from_subwords()
        self.set_unseen_glosses([])

    @property
    def config(self) -> MBartConfig:
        return self.mbart.config

    @torch.no_grad()
    def init_gloss_table_from_subwords(self) -> None:
        """Each gloss row := mean of its sub-token rows of the shared embedding (unscaled)."""
        shared = self.mbart.get_input_embeddings().weight
        for g, ids in enumerate(self.gloss_subwords or []):
            if ids:
                self.gloss_embedding.weight[g] = shared[ids].mean(0)

    def gloss_table(self) -> torch.Tensor:
        """(num_glosses, d_model) unscaled gloss embeddings."""
        if self.gloss_embedding_mode == "table":
            return self.gloss_embedding.weight
        shared = self.mbart.get_input_embeddings().weight
        means = F.embedding_bag(self._subword_ids, shared, self._subword_offsets, mode="mean")
        return means + self.gloss_embedding.weight

    def set_unseen_glosses(self, subwords: Sequence[Sequence[int]]) -> None:
        """Give gloss ids `num_glosses + j` the embedding mean(shared[subwords[j]]): glosses absent
        from the training vocabulary, by their spelling's sub-token ids (each list non-empty). An
        inference-time extension: not saved with the weights; [] removes it."""
        if any(len(s) == 0 for s in subwords):
            raise ValueError("every unseen gloss needs at least one sub-token id")
        ids, offsets = embedding_bags(subwords)
        device = self.gloss_embedding.weight.device
        self.num_unseen_glosses = len(subwords)
        self.register_buffer("_unseen_ids", ids.to(device), persistent=False)
        self.register_buffer("_unseen_offsets", offsets.to(device), persistent=False)

    def source_gloss_table(self) -> torch.Tensor:
        """(num_glosses + unseen, d_model): `gloss_table()` and the unseen glosses' rows."""
        table = self.gloss_table()
        if not self.num_unseen_glosses:
            return table
        shared = self.mbart.get_input_embeddings().weight
        unseen = F.embedding_bag(self._unseen_ids, shared, self._unseen_offsets, mode="mean")
        return torch.cat([table, unseen.to(table.dtype)])

    def freeze_embeddings(self) -> None:
        """Stop training the gloss embeddings and the text embeddings (the shared table, the encoder's
        and decoder's token tables, and with them the output layer where it is tied to them), as the
        public code does when fine-tuning a pretrained mBART. An untied output layer keeps training."""
        self.gloss_embedding.weight.requires_grad_(False)
        model = self.mbart.model
        for table in (model.shared, model.encoder.embed_tokens, model.decoder.embed_tokens):
            table.weight.requires_grad_(False)

    def embed_source(self, gloss_ids: torch.Tensor, gloss_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gloss_ids (B, S) right-padded, gloss_lengths (B,) -> inputs_embeds (B, S+2, D) with
        `</s> <src_lang>` right after each sequence, and the attention mask (B, S+2)."""
        x = F.embedding(gloss_ids, self.source_gloss_table(), padding_idx=self.gloss_pad_id) * self.embed_scale
        return self.append_source_suffix(x, gloss_lengths)

    def append_source_suffix(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source embeddings x (B, S, D), valid lengths (B,) -> (B, S+2, D) with the embeddings of
        `</s> <src_lang>` right after each sequence's last valid step (zeros after), and the
        attention mask (B, S+2). mBART's encoder adds its learned position embeddings to these."""
        B, S, D = x.shape
        if S + 2 > self.config.max_position_embeddings:
            raise ValueError(f"a source of {S} steps (+2 for </s> <lang>) exceeds the mBART's "
                             f"max_position_embeddings {self.config.max_position_embeddings}")
        lengths = lengths.to(x.device)
        x = x * (torch.arange(S, device=x.device)[None, :] < lengths[:, None])[..., None].to(x.dtype)
        x = torch.cat([x, x.new_zeros(B, 2, D)], dim=1)
        suffix = self.mbart.get_input_embeddings()(torch.tensor([self.eos_id, self.src_lang_id], device=x.device))
        positions = lengths[:, None] + torch.arange(2, device=x.device)  # (B, 2)
        x = x.scatter(1, positions[..., None].expand(B, 2, D), suffix.to(x.dtype).expand(B, 2, D))
        mask = torch.arange(S + 2, device=x.device)[None] < (lengths + 2)[:, None]
        return x, mask.long()

    def forward(
        self,
        gloss_ids: torch.Tensor,
        gloss_lengths: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        rdrop_alpha: float = 0.0,
    ) -> torch.Tensor:
        """Teacher forcing with decoder_input_ids (B, T) = `<lang> y_1 .. y_{T-1}`.

        Without labels: logits (B, T, V). With labels (B, T) = `y_1 .. </s>` (pad elsewhere): the
        label-smoothed cross-entropy, mean over non-pad tokens; the vocabulary projection is then
        computed for those positions only (padding costs nothing there). `rdrop_alpha` > 0 (R-Drop,
        Liang et al. 2021): the batch runs twice in one forward, under different dropout masks, and
        the loss is the cross-entropy of both plus `rdrop_alpha` x the per-token symmetric KL
        divergence between their next-token distributions (`symmetric_kl`).
        """
        inputs_embeds, mask = self.embed_source(gloss_ids, gloss_lengths)
        return self.forward_embeds(inputs_embeds, mask, decoder_input_ids, labels, label_smoothing, rdrop_alpha)

    def forward_embeds(self, inputs_embeds: torch.Tensor, mask: torch.Tensor, decoder_input_ids: torch.Tensor,
                       labels: torch.Tensor | None = None, label_smoothing: float = 0.0,
                       rdrop_alpha: float = 0.0) -> torch.Tensor:
        """`forward` from source embeddings (B, S, D) and their attention mask (B, S) (see
        `append_source_suffix`): logits, or the loss with labels."""
        rdrop = labels is not None and rdrop_alpha > 0
        if rdrop:
            inputs_embeds, mask, decoder_input_ids, labels = (torch.cat([t, t]) for t in (inputs_embeds, mask, decoder_input_ids, labels))
        hidden = self.mbart.model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_input_ids.ne(self.pad_id).long(),
            use_cache=False,
        ).last_hidden_state
        if labels is None:
            return self.output_logits(hidden)
        keep = labels.ne(self.pad_id)
        logits = self.output_logits(hidden[keep]).float()
        loss = F.cross_entropy(logits, labels[keep], label_smoothing=label_smoothing)
        if rdrop:  # keep's first half covers the first copy's tokens, its second half the same tokens again
            loss = loss + rdrop_alpha * symmetric_kl(*logits.chunk(2))
        return loss

    def output_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., D) -> text logits (..., V): mBART's output layer and its final bias."""
        return self.mbart.lm_head(hidden) + self.mbart.final_logits_bias.to(hidden.dtype)

    @torch.no_grad()
    def translate(
        self,
        gloss_ids: torch.Tensor,
        gloss_lengths: torch.Tensor,
        *,
        num_beams: int = 5,
        length_penalty: float = 1.0,
        max_length: int = 100,
    ) -> list[list[int]]:
        """Hugging Face `generate` (beam search, or greedy with num_beams=1): per sample the
        generated ids without the start, `</s>` and padding."""
        inputs_embeds, mask = self.embed_source(gloss_ids, gloss_lengths)
        return self.translate_embeds(inputs_embeds, mask, num_beams=num_beams, length_penalty=length_penalty,
                                     max_length=max_length)

    @torch.no_grad()
    def translate_embeds(self, inputs_embeds: torch.Tensor, mask: torch.Tensor, *, num_beams: int = 5,
                         length_penalty: float = 1.0, max_length: int = 100) -> list[list[int]]:
        """`translate` from source embeddings (B, S, D) and their attention mask (B, S)."""
        encoder_outputs = self.mbart.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=mask)
        generation = GenerationConfig(
            num_beams=num_beams,
            length_penalty=length_penalty,
            max_length=max_length,
            early_stopping=True if num_beams > 1 else False,
            do_sample=False,
            decoder_start_token_id=self.tgt_lang_id,
            bos_token_id=self.config.bos_token_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            forced_eos_token_id=self.eos_id,
        )
        out = self.mbart.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state),
            attention_mask=mask,
            generation_config=generation,
        )
        result = []
        for row in out.tolist():
            ids = []
            for t in row[1:]:
                if t == self.eos_id:
                    break
                if t != self.pad_id:
                    ids.append(t)
            result.append(ids)
        return result

    # ---- persistence (the checkpoint files are written by training/checkpoint.py) --------------
    def spec(self) -> dict:
        """The wrapper's constructor arguments beside the mBART config, as JSON-able values."""
        return {
            "num_glosses": self.gloss_embedding.num_embeddings,
            "src_lang_id": self.src_lang_id,
            "tgt_lang_id": self.tgt_lang_id,
            "gloss_embedding": self.gloss_embedding_mode,
            "gloss_subwords": self.gloss_subwords,
        }

    def config_dict(self) -> dict:
        """{"mbart": the MBartConfig as a dict, "wrapper": spec()}: enough to rebuild the module."""
        return {"mbart": self.config.to_dict(), "wrapper": self.spec()}

    @classmethod
    def from_config_dict(cls, config: dict) -> "GlossToText":
        """An untrained GlossToText of the shape `config_dict()` describes (load weights after)."""
        return cls(MBartForConditionalGeneration(MBartConfig(**config["mbart"])), **config["wrapper"])


def fast_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Dropout whose mask comes from 8 random bits per element (the drop probability is rounded to
    a multiple of 1/256). On CPU, torch's dropout spends most of its time drawing one random number
    per element (~30 ms for a 2048x256 activation here, 100x a multiplication); this is ~10x faster.
    Other devices use torch's dropout."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training, inplace)
    threshold = min(255, round(p * 256))
    n = x.numel()
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64).view(torch.uint8)[:n]
    keep = bits.view(x.shape) >= threshold
    return x * keep * (256.0 / (256 - threshold))


class _FastDropoutFunctional:
    dropout = staticmethod(fast_dropout)

    def __getattr__(self, name):
        return getattr(F, name)


class _FastDropoutNN:
    functional = _FastDropoutFunctional()

    def __getattr__(self, name):
        return getattr(nn, name)


@contextmanager
def cpu_fast_dropout(enabled: bool = True):
    """Within the block, transformers' mBART layers use `fast_dropout` for their hidden-state
    dropouts (they call `nn.functional.dropout`; only that module's `nn` name is swapped)."""
    from transformers.models.mbart import modeling_mbart

    if not enabled:
        yield
        return
    original = modeling_mbart.nn
    modeling_mbart.nn = _FastDropoutNN()
    try:
        yield
    finally:
        modeling_mbart.nn = original


def translation_loss(logits: torch.Tensor, labels: torch.Tensor, *, pad_id: int, label_smoothing: float = 0.2) -> torch.Tensor:
    """Label-smoothed cross-entropy, mean over non-pad target tokens. logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=pad_id, label_smoothing=label_smoothing
    )


# ---- pretrained mBART: vocabulary pruning ------------------------------------------------------


def prune_mbart(model: MBartForConditionalGeneration, kept_ids: Sequence[int]) -> MBartForConditionalGeneration:
    """Keep only `kept_ids` (old ids, sorted, specials 0..3 first) of the shared embedding,
    `lm_head` and `final_logits_bias`, in place; new id = position in `kept_ids`."""
    kept = torch.tensor(list(kept_ids), dtype=torch.long)
    if kept[:4].tolist() != [0, 1, 2, 3] or not bool((kept[1:] > kept[:-1]).all()):
        raise ValueError("kept_ids must be sorted and unique and start with 0, 1, 2, 3")
    old2new = {int(o): n for n, o in enumerate(kept.tolist())}
    old_embed = model.get_input_embeddings()
    old_head = model.get_output_embeddings()
    tied = old_head.weight.data_ptr() == old_embed.weight.data_ptr()
    new_embed = type(old_embed)(len(kept), old_embed.embedding_dim, old_embed.padding_idx, embed_scale=old_embed.embed_scale)
    new_embed.weight.data = old_embed.weight.data[kept].clone()
    model.model.set_input_embeddings(new_embed)
    new_head = nn.Linear(old_head.in_features, len(kept), bias=False)
    new_head.weight = new_embed.weight if tied else nn.Parameter(old_head.weight.data[kept].clone())
    model.lm_head = new_head
    model.final_logits_bias = model.final_logits_bias[:, kept].clone()
    model.config.vocab_size = len(kept)
    for attr in ("decoder_start_token_id", "forced_bos_token_id"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value >= 4:
            setattr(model.config, attr, old2new.get(value))
    return model


def prune_mbart_checkpoint(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    texts: Sequence[str],
    glosses: Sequence[str],
) -> dict:
    """Prune a local mBART checkpoint (weights + SentencePiece tokenizer) to the sub-words of
    `texts` and `glosses` (pass the training split's texts and lower-cased glosses), and write
    `out_dir` with: the pruned model (`save_pretrained`), the tokenizer with its id map
    (`text_tokenizer.json`: kept_ids[new] = old; also `id_map.json` {old: new}), and
    `gloss_embeddings.pt` {"glosses": [...], "subwords": [[new ids]], "weight": (G, D)}, each row
    the mean of the gloss's sub-token embeddings. Returns a summary."""
    from pipelines.text_tokenizer import MBartTextTokenizer, pruned_vocabulary

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    full_tok = MBartTextTokenizer.from_pretrained(src_dir)
    kept = pruned_vocabulary(full_tok, [*texts, *glosses])
    model = MBartForConditionalGeneration.from_pretrained(str(src_dir), local_files_only=True)
    full_vocab = model.config.vocab_size
    prune_mbart(model, kept)
    tok = MBartTextTokenizer(full_tok.hf, kept)
    shared = model.get_input_embeddings().weight.detach()
    unique_glosses = list(dict.fromkeys(glosses))
    subwords = [tok.encode(g) for g in unique_glosses]
    weight = torch.stack([shared[ids].mean(0) if ids else shared[tok.unk_id] for ids in subwords])
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tok.save(tmp)
        (tmp / "id_map.json").write_text(json.dumps({str(o): n for n, o in enumerate(kept)}))
        torch.save({"glosses": unique_glosses, "subwords": subwords, "weight": weight.clone()}, tmp / GLOSS_EMBEDDING_FILE)
    summary = {"full_vocab": full_vocab, "pruned_vocab": len(kept), "glosses": len(unique_glosses)}
    log.info("pruned %s -> %s: %s", src_dir, out_dir, summary)
    return summary


def load_pruned_mbart(directory: str | Path):
    """(MBartForConditionalGeneration, MBartTextTokenizer) from a pruned (or full) local mBART dir."""
    from pipelines.text_tokenizer import MBartTextTokenizer, TOKENIZER_FILE, load_text_tokenizer

    directory = Path(directory)
    model = MBartForConditionalGeneration.from_pretrained(str(directory), local_files_only=True)
    tok = load_text_tokenizer(directory) if (directory / TOKENIZER_FILE).exists() else MBartTextTokenizer.from_pretrained(directory)
    if len(tok) != model.config.vocab_size:
        raise ValueError(f"{directory}: tokenizer has {len(tok)} ids but the model {model.config.vocab_size}")
    return model, tok
