"""Text tokenizers for Gloss2Text: SentencePiece training, mBART tokenizer pruning, scoring forms."""

from __future__ import annotations

import pytest
from _translation_helpers import GERMAN, tiny_mbart_tokenizer

from pipelines.text_tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    MBartTextTokenizer,
    SentencePieceTokenizer,
    load_text_tokenizer,
    pruned_vocabulary,
    scoring_form,
)

CHINESE = ["你们好！", "对不起，我来晚了。", "今天天气怎么样？", "我们明天去北京。"] * 20


def test_sentencepiece_round_trip_and_special_ids(tmp_path):
    tok = SentencePieceTokenizer.train(GERMAN, tmp_path / "tok", vocab_size=80, languages=["de_DE"])
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (BOS_ID, PAD_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert tok.piece(tok.lang_id("de_DE")) == "de_DE" and tok.lang_id("de_DE") >= 4
    for text in GERMAN[:4]:
        ids = tok.encode(text)
        assert min(ids) > 3 and tok.lang_id("de_DE") not in ids
        assert tok.decode(ids) == text
        # specials and language codes are dropped when decoding
        assert tok.decode([tok.lang_id("de_DE"), *ids, tok.eos_id, tok.pad_id]) == text
    with pytest.raises(KeyError, match="zh_CN"):
        tok.lang_id("zh_CN")
    again = load_text_tokenizer(tmp_path / "tok")
    assert again.encode(GERMAN[1]) == tok.encode(GERMAN[1]) and len(again) == len(tok)


def test_sentencepiece_keeps_chinese_full_width_punctuation(tmp_path):
    # NFKC (SentencePiece's default) would turn "！" into "!" and change character-level scores.
    tok = SentencePieceTokenizer.train(CHINESE, tmp_path / "zh", vocab_size=60, languages=["zh_CN"])
    for text in CHINESE[:4]:
        assert tok.decode(tok.encode(text)) == text


def test_scoring_forms():
    assert scoring_form("es regnet  morgen.", "word") == "es regnet morgen ."
    assert scoring_form("es regnet morgen .", "word") == "es regnet morgen ."
    assert scoring_form("你们 好！", "char") == "你们好！"
    with pytest.raises(ValueError, match="scoring level"):
        scoring_form("x", "bpe")


def test_mbart_tokenizer_pruning_map(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_mbart_tokenizer(tmp_path / "mbart")
    full = MBartTextTokenizer.from_pretrained(tmp_path / "mbart")  # as a user loads a local checkpoint
    text = GERMAN[2]
    kept = pruned_vocabulary(full, [text])
    assert kept[:4] == [0, 1, 2, 3] and kept == sorted(set(kept))
    assert full.lang_id("de_DE") in kept and full.lang_id("zh_CN") in kept  # all language codes kept
    pruned = MBartTextTokenizer(full.hf, kept)
    new_ids = pruned.encode(text)
    assert [kept[i] for i in new_ids] == full.encode(text)
    assert pruned.decode(new_ids) == full.decode(full.encode(text)) == text
    assert pruned.lang_id("de_DE") == kept.index(full.lang_id("de_DE"))
    # a word whose pieces were pruned becomes <unk> (here: pieces only in another sentence)
    other = [i for i in full.encode(GERMAN[0]) if i not in kept]
    assert other and UNK_ID in pruned.encode(GERMAN[0])
    pruned.save(tmp_path / "saved")
    again = load_text_tokenizer(tmp_path / "saved")
    assert again.encode(text) == new_ids and len(again) == len(kept)
