"""Gloss2Text throughput: training tokens/s (forward + backward + AdamW step) and decoding
sentences/s (greedy and beam search), on the real PHOENIX-2014T training/dev glosses and texts.

    python bench/translation.py [--config configs/translation/phoenix2014t_g2t.yaml] [--steps 30]
        [--threads 2] [key=value ...]

Baselines in the same run: training with the vocabulary projection on every (padded) target
position instead of only the real tokens, and `torch.nn.Transformer` of the same size (plain
embeddings, no mBART extras); decoding with greedy search next to beam search. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def _batches(cfg, examples, n):
    from pipelines.translation_data import collate, token_batches

    order = token_batches(examples, max_tokens=cfg.train.batch_tokens, max_sentences=cfg.train.max_sentences, shuffle=True, seed=0)
    return [collate([examples[i] for i in b], tgt_lang_id=4) for b in order[:n]]


def _train_rate(step_fn, params, batches, warmup: int = 3) -> float:
    opt = torch.optim.AdamW(params, lr=1e-4)
    for b in batches[:warmup]:
        opt.zero_grad()
        step_fn(b).backward()
        opt.step()
    tokens, t0 = 0, time.perf_counter()
    for b in batches[warmup:]:
        opt.zero_grad()
        step_fn(b).backward()
        opt.step()
        tokens += int(b["labels"].ne(1).sum())
    return tokens / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/translation/phoenix2014t_g2t.yaml")
    p.add_argument("--steps", type=int, default=30, help="timed training steps (after 3 warm-up steps)")
    p.add_argument("--decode-sentences", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    from common.config import load_config
    from jobs.train_translation import TranslationConfig, build_model, load_split
    from training.evaluation import decode_examples
    from pipelines.text_tokenizer import SentencePieceTokenizer
    from pipelines.translation_data import encode_examples
    from pipelines.vocabulary import GlossVocabulary

    cfg = load_config(TranslationConfig, args.config, args.overrides)
    threads = args.threads or cfg.train.num_threads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = load_split(cfg, cfg.data.train_split, cfg.data.train_limit)
    dev = load_split(cfg, cfg.data.dev_split, cfg.data.dev_limit)
    vocab = GlossVocabulary.from_training_samples(train)
    with tempfile.TemporaryDirectory() as tmp:
        texts = [s.text for s in train] + ([s.gloss_string for s in train] if cfg.tokenizer.include_glosses else [])
        tok = SentencePieceTokenizer.train(texts, Path(tmp), vocab_size=cfg.tokenizer.vocab_size,
                                           languages=sorted({cfg.data.src_lang, cfg.data.tgt_lang}), model_type=cfg.tokenizer.model_type)
        lengths = dict(max_source_length=cfg.data.max_source_length, max_target_length=cfg.data.max_target_length)
        train_ex = encode_examples(train, vocab, tok, **lengths)
        dev_ex = encode_examples(dev, vocab, tok, **lengths)[: args.decode_sentences]
        model = build_model(cfg, Path(tmp), tok, vocab)
    batches = _batches(cfg, train_ex, args.steps + 3)
    ls = cfg.optim.label_smoothing
    model.train()
    ours = _train_rate(lambda b: model(b["gloss_ids"], b["gloss_lengths"], b["decoder_input_ids"], labels=b["labels"], label_smoothing=ls),
                       list(model.parameters()), batches)

    from models.translation import translation_loss

    full_logits = _train_rate(lambda b: translation_loss(model(b["gloss_ids"], b["gloss_lengths"], b["decoder_input_ids"]), b["labels"],
                                                         pad_id=1, label_smoothing=ls), list(model.parameters()), batches)
    m = cfg.model
    plain = torch.nn.Transformer(d_model=m.d_model, nhead=m.attention_heads, num_encoder_layers=m.encoder_layers,
                                 num_decoder_layers=m.decoder_layers, dim_feedforward=m.ffn_dim, dropout=m.dropout,
                                 batch_first=True, norm_first=True)
    src_emb, tgt_emb = torch.nn.Embedding(len(vocab), m.d_model), torch.nn.Embedding(len(tok), m.d_model)
    head = torch.nn.Linear(m.d_model, len(tok))
    plain_params = [*plain.parameters(), *src_emb.parameters(), *tgt_emb.parameters(), *head.parameters()]

    def plain_step(b):
        T = b["decoder_input_ids"].shape[1]
        out = plain(src_emb(b["gloss_ids"]), tgt_emb(b["decoder_input_ids"]),
                    tgt_mask=plain.generate_square_subsequent_mask(T),
                    src_key_padding_mask=b["gloss_ids"].eq(1), tgt_key_padding_mask=b["decoder_input_ids"].eq(1))
        return translation_loss(head(out), b["labels"], pad_id=1, label_smoothing=ls)

    plain.train()
    baseline = _train_rate(plain_step, plain_params, batches)

    model.eval()
    decode = {}
    for name, beams in (("greedy", 1), ("beam", cfg.decode.num_beams)):
        t0 = time.perf_counter()
        decode_examples(model, dev_ex, tok, num_beams=beams, length_penalty=cfg.decode.length_penalty, max_length=cfg.decode.max_length,
                        batch_size=cfg.decode.batch_size, device=torch.device("cpu"))
        decode[name] = len(dev_ex) / (time.perf_counter() - t0)
    result = {
        "bench": "translation",
        "config": args.config,
        "overrides": args.overrides,
        "model": {"d_model": m.d_model, "layers": [m.encoder_layers, m.decoder_layers], "ffn": m.ffn_dim,
                  "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "text_vocab": len(tok)},
        "threads": torch.get_num_threads(),
        "batch_tokens": cfg.train.batch_tokens,
        "train_tokens_per_s": round(ours, 1),
        "baseline_full_logits_tokens_per_s": round(full_logits, 1),
        "baseline_nn_transformer_tokens_per_s": round(baseline, 1),
        "decode_greedy_sentences_per_s": round(decode["greedy"], 2),
        f"decode_beam{cfg.decode.num_beams}_sentences_per_s": round(decode["beam"], 2),
        "decode_sentences": len(dev_ex),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
