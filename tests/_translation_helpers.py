"""Shared builders for the Gloss2Text tests: a tiny mBART tokenizer and checkpoint, a tiny corpus."""

from __future__ import annotations

from pathlib import Path

GERMAN = [
    "und nun die wettervorhersage für morgen donnerstag den zwölften august .",
    "mancherorts regnet es auch länger und ergiebig auch lokale überschwemmungen sind wieder möglich .",
    "im nordwesten bleibt es heute nacht meist trocken .",
    "morgen scheint im süden die sonne bei temperaturen bis zu dreißig grad .",
] * 20


def tiny_mbart_tokenizer(directory: Path, texts=GERMAN):
    """An `MBartTokenizer` laid out like mbart-large-cc25's (<s> <pad> </s> <unk>, SentencePiece
    pieces, 25 language codes, <mask>) on a tiny SentencePiece model trained here. Built from the
    pieces directly (as transformers' converter does), saved to `directory`."""
    import sentencepiece as spm
    from transformers import MBartTokenizer
    from transformers.models.mbart.tokenization_mbart import FAIRSEQ_LANGUAGE_CODES

    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(directory / "sentencepiece.bpe"),
                                   vocab_size=60, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(directory / "sentencepiece.bpe.model"))
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, sp.get_piece_size())]  # spm: unk, bos, eos first
    vocab += [(code, 0.0) for code in FAIRSEQ_LANGUAGE_CODES] + [("<mask>", 0.0)]
    tok = MBartTokenizer(vocab=vocab, src_lang="de_DE", tgt_lang="de_DE")
    tok.save_pretrained(str(directory))
    return tok


def tiny_mbart_checkpoint(directory: Path, seed: int = 0):
    """A tiny random mBART (+ its tokenizer) saved with `save_pretrained` into `directory`."""
    import torch
    from transformers import MBartConfig, MBartForConditionalGeneration

    tok = tiny_mbart_tokenizer(directory)
    config = MBartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                         scale_embedding=True, dropout=0.0)
    torch.manual_seed(seed)
    model = MBartForConditionalGeneration(config)
    with torch.no_grad():
        model.final_logits_bias.normal_()  # non-zero, so that slicing it is tested
    model.save_pretrained(str(directory))
    return model, tok


def write_tiny_corpus(directory: Path, n_train: int = 120, n_dev: int = 24, seed: int = 0) -> dict[str, str]:
    """A learnable toy PHOENIX-2014T-format corpus: each gloss stands for one German word."""
    import random

    lexicon = {"MORGEN": "morgen", "REGEN": "regen", "SONNE": "sonne", "NORD": "im norden", "SUED": "im süden",
               "WARM": "warm", "KALT": "kalt", "WIND": "wind", "HEUTE": "heute", "NACHT": "nachts"}
    rng = random.Random(seed)
    files = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["name|video|start|end|speaker|orth|translation"]
        for k in range(n):
            glosses = rng.sample(sorted(lexicon), rng.randint(2, 4))
            text = " ".join(lexicon[g] for g in glosses) + " ."
            rows.append(f"{split}_{k}|{split}_{k}/1/*.png|-1|-1|Signer01|{' '.join(glosses)}|{text}")
        path = directory / f"toy.{split}.corpus.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        files[split] = str(path)
    return files
