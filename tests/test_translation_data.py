"""Gloss2Text data: encoding (unk, truncation, empty glosses), batching, padding, predicted glosses."""

from __future__ import annotations

import random

import pytest

from pipelines.records import Sample
from pipelines.translation_data import (
    EncodingStats,
    TranslationExample,
    augment_glosses,
    collate,
    cover_unseen_glosses,
    encode_examples,
    gloss_subword_ids,
    normalize_glosses,
    read_gloss_predictions,
    text_spellings,
    token_batches,
)
from pipelines.vocabulary import GlossVocabulary


class WordTokenizer:
    """Stand-in text tokenizer: one id per known word (specials 0..3, unknown -> 3)."""

    pad_id, eos_id, unk_id = 1, 2, 3

    def __init__(self, words):
        self.ids = {w: i + 5 for i, w in enumerate(words)}

    def encode(self, text):
        return [self.ids.get(w, 3) for w in text.split()]


def _sample(name, glosses, text, split="train"):
    return Sample(name, split, "s1", tuple(glosses), text, None, None, "dgs")


def test_encode_counts_unknown_glosses_and_truncates_long_texts():
    train = normalize_glosses([_sample("a", ["REGEN", "MORGEN"], "morgen regen ."), _sample("b", ["SONNE"], "sonne .")])
    assert train[0].glosses == ("regen", "morgen")
    vocab = GlossVocabulary.from_training_samples(train)
    tok = WordTokenizer(["morgen", "regen", "sonne", "."])
    dev = normalize_glosses([_sample("c", ["REGEN", "SCHNEE", "SCHNEE"], "morgen regen regen sonne sonne .", "dev")])
    stats = EncodingStats()
    (ex,) = encode_examples(dev, vocab, tok, max_source_length=10, max_target_length=4, stats=stats)
    assert ex.gloss_ids == (vocab.stoi["regen"], vocab.unk_id, vocab.unk_id)
    assert stats.unknown_glosses == {"schnee": 2} and stats.unknown_gloss_tokens == 2 and stats.gloss_tokens == 3
    assert ex.target_ids == (5, 6, 6)  # 3 sub-words + </s> = max_target_length
    assert stats.truncated_targets == 1 and stats.summary()["truncated_targets"] == 1
    with pytest.raises(ValueError, match=r"sample 'e' \(dev\): empty gloss sequence"):
        encode_examples([_sample("e", [], "x", "dev")], vocab, tok, max_source_length=10, max_target_length=10)


def test_collate_pads_and_shifts():
    exs = [TranslationExample("a", (5, 6, 7), (10, 11), "t"), TranslationExample("b", (8,), (12, 13, 14), "u")]
    b = collate(exs, tgt_lang_id=4)
    assert b["gloss_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert b["gloss_lengths"].tolist() == [3, 1]
    assert b["decoder_input_ids"].tolist() == [[4, 10, 11, 1], [4, 12, 13, 14]]
    assert b["labels"].tolist() == [[10, 11, 2, 1], [12, 13, 14, 2]]


def test_token_batches_cover_everything_once_within_budget():
    rng = random.Random(1)
    exs = [TranslationExample(str(i), (1,) * rng.randint(1, 20), (1,) * rng.randint(1, 40), None) for i in range(300)]
    batches = token_batches(exs, max_tokens=200, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        longest = max(max(len(exs[i].target_ids), len(exs[i].gloss_ids)) + 1 for i in b)
        assert longest * len(b) <= 200 or len(b) == 1
    assert batches == token_batches(exs, max_tokens=200, shuffle=True, seed=3)
    assert batches != token_batches(exs, max_tokens=200, shuffle=True, seed=4)
    shards = [token_batches(exs, max_tokens=200, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(batches) // 2
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def test_augment_glosses_drops_and_masks_but_never_empties():
    rng = random.Random(0)
    assert augment_glosses((5, 6, 7), rng) == (5, 6, 7)
    out = [augment_glosses((5, 6, 7, 8), rng, drop_prob=0.3, unk_prob=0.2) for _ in range(2000)]
    assert all(out) and any(len(o) < 4 for o in out) and any(2 in o for o in out)
    lengths = sum(len(o) for o in out) / len(out)
    assert 2.6 < lengths < 3.0  # 4 x 0.7, plus the kept-one rule
    assert all(len(augment_glosses((5,), rng, drop_prob=1.0)) == 1 for _ in range(10))


def test_read_gloss_predictions(tmp_path):
    samples = [_sample("a", ["X"], "x", "dev"), _sample("b", ["Y"], "y", "dev")]
    path = tmp_path / "pred.tsv"
    path.write_text("b\tREGEN SONNE\na\tMORGEN\n")
    out = read_gloss_predictions(path, samples)
    assert [s.glosses for s in out] == [("MORGEN",), ("REGEN", "SONNE")] and out[0].text == "x"
    for content, message in [
        ("a\tMORGEN\nb\t  \n", r"pred.tsv:2: sample 'b': empty gloss sequence"),
        ("a\tMORGEN\nz\tX\n", r"pred.tsv:2: sample 'z' is not in the evaluated split"),
        ("a\tMORGEN\n", r"no predicted glosses for 1 sample\(s\), e.g. \['b'\]"),
        ("a MORGEN\n", r"pred.tsv:1: expected '<name>\\t<glosses>'"),
        ("a\tX\na\tY\n", r"pred.tsv:2: duplicate sample 'a'"),
    ]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            read_gloss_predictions(path, samples)


def test_noise_decoder_inputs_keeps_language_token_and_padding():
    import torch

    from pipelines.translation_data import noise_decoder_inputs

    torch.manual_seed(0)
    dec = torch.tensor([[4] + [10] * 999, [4] + [11] * 499 + [1] * 500])
    noisy = noise_decoder_inputs(dec, 0.2)
    assert noisy[:, 0].tolist() == [4, 4] and noisy[1, 500:].eq(1).all()
    changed = noisy.ne(dec)
    assert noisy[changed].eq(3).all() and 0.15 < changed[0].float().mean() < 0.25
    assert noise_decoder_inputs(dec, 0.0).equal(dec)


class SpellingTokenizer(WordTokenizer):
    """Splits words at '-' into known pieces: 'regen-schnee' -> [regen, schnee]."""

    def encode(self, text):
        return [self.ids.get(p, 3) for w in text.split() for p in w.split("-")]

    def piece(self, token_id):
        return {i: w for w, i in self.ids.items()}.get(token_id, "<unk>")


def test_cover_unseen_glosses_spells_new_glosses_with_known_pieces_only():
    train = normalize_glosses([_sample("a", ["REGEN", "MORGEN"], "morgen regen ."), _sample("b", ["SONNE"], "sonne .")])
    vocab = GlossVocabulary.from_training_samples(train)
    tok = SpellingTokenizer(["morgen", "regen", "sonne", "schnee"])
    dev = normalize_glosses([_sample("c", ["REGEN-SCHNEE", "XYZ", "SONNE", "REGEN-SCHNEE", "SCHNEE-XYZ"], "x", "dev")])
    extended, subwords = cover_unseen_glosses(dev, vocab, tok)
    # known pieces only (xyz -> <unk> is left out); a gloss with no known piece is not added
    assert extended.glosses == [*vocab.glosses, "regen-schnee", "schnee-xyz"]
    assert subwords == [[6, 8], [8]]
    (ex,) = encode_examples(dev, extended, tok, max_source_length=10, max_target_length=10)
    n = len(vocab)
    assert ex.gloss_ids == (n, vocab.unk_id, vocab.stoi["sonne"], n, n + 1)
    assert cover_unseen_glosses(train, vocab, tok) == (vocab, [])  # nothing new: the same vocabulary


def test_cover_unseen_glosses_ignores_sentencepieces_bare_word_boundary(tmp_path):
    from pipelines.text_tokenizer import SentencePieceTokenizer

    tok = SentencePieceTokenizer.train(["morgen regen sonne im norden .", "im süden warm kalt wind heute nachts ."] * 20,
                                       tmp_path, vocab_size=60, languages=["de_DE"], model_type="bpe")
    assert [tok.piece(i) for i in tok.encode("xyz")] == ["\u2581", "<unk>"]  # the case this guards against
    vocab = GlossVocabulary.from_training_samples(normalize_glosses([_sample("a", ["REGEN"], "regen .")]))
    dev = normalize_glosses([_sample("c", ["XYZ", "UNBEKANNT"], "x", "dev")])
    extended, subwords = cover_unseen_glosses(dev, vocab, tok)
    # xyz: no letter known, stays <unk>; unbekannt: spelled from u, n, e, k, a, n, n, t (b unknown, no bare boundary)
    assert extended.glosses == [*vocab.glosses, "unbekannt"]
    assert [tok.piece(i) for i in subwords[0]] == ["u", "n", "e", "k", "a", "n", "n", "t"]


def test_text_spellings_restore_transliterated_letters_only_where_the_texts_write_them():
    texts = ["wir können morgen", "können wir das", "mäßig warm und süden", "heiß", "nasse straße", "die maße"]
    glosses = ["koennen", "neg-koennen", "maessig", "sued", "heiss", "nasse", "morgen", "mueller", "masse-koennen"]
    assert text_spellings(glosses, texts) == {
        "koennen": "können",  # oe -> ö
        "neg-koennen": "neg-können",  # per hyphen-separated part; "neg" stays
        "maessig": "mäßig",  # two letters restored at once (ae and ss)
        "masse-koennen": "maße-können",  # "masse" is no text word, "maße" is
        "heiss": "heiß",
    }  # "sued": the texts write "süden", not "süd"; "nasse" is itself a text word; "mueller" no word at all
    assert text_spellings(["fuer"], ["für für fuer-x", "fuer"]) == {}  # "fuer" is a text word itself
    # several restorations are text words (füsse, füße): the most frequent one wins, either way round
    assert text_spellings(["fuesse"], ["füße füße", "füsse"]) == {"fuesse": "füße"}
    assert text_spellings(["fuesse"], ["füße", "füsse füsse"]) == {"fuesse": "füsse"}
    assert text_spellings(["ueben"], ["üben", "übén", "ueben-x", "uëben"]) == {"ueben": "üben"}  # only ae/oe/ue/ss


def test_gloss_subword_ids_embed_a_gloss_from_its_texts_spelling():
    vocab = GlossVocabulary(["koennen", "morgen"])
    tok = WordTokenizer(["können", "morgen"])
    plain = gloss_subword_ids(vocab, tok)
    respelled = gloss_subword_ids(vocab, tok, {"koennen": "können"})
    k, m = vocab.stoi["koennen"], vocab.stoi["morgen"]
    assert plain[k] == [tok.unk_id] and respelled[k] == [5]
    assert plain[m] == respelled[m] == [6]
    assert respelled[vocab.pad_id] == [] and respelled[vocab.unk_id] == [tok.unk_id]
