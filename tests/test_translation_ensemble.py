"""Ensemble decoding of Gloss2Text models (models.translation_ensemble) and checkpoint ensembles
(training.checkpoint.load_gloss2text_ensemble, `jobs/evaluate.py --task g2t --checkpoint A B`)."""

from __future__ import annotations

import pytest
import torch
from _translation_helpers import GERMAN

from models.translation import GlossToText, build_scratch_mbart
from models.translation_ensemble import GlossToTextEnsemble, ensemble_beam_search


def _tiny(seed: int, eos_bias: float = 2.0, vocab: int = 50) -> GlossToText:
    mbart = build_scratch_mbart(vocab, d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
                                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=64, seed=seed)
    with torch.no_grad():
        mbart.final_logits_bias[0, 2] = eos_bias  # </s> likely enough that hypotheses end at different lengths
    return GlossToText(mbart, 15, src_lang_id=4, tgt_lang_id=5).eval()


def _sources(seed: int, batch: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 15, (batch, 6), generator=g), torch.randint(1, 7, (batch,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_model_ensemble_matches_hugging_face_generate(seed):
    model = _tiny(seed, eos_bias=2.0 + 0.5 * seed)
    ids, lens = _sources(seed)
    ensemble = GlossToTextEnsemble([model])
    for num_beams, length_penalty, max_length in [(1, 1.0, 12), (2, 0.6, 4), (3, 1.5, 12), (5, 1.0, 12), (5, 2.0, 7)]:
        expected = model.translate(ids, lens, num_beams=num_beams, length_penalty=length_penalty, max_length=max_length)
        got = ensemble.translate(ids, lens, num_beams=num_beams, length_penalty=length_penalty, max_length=max_length)
        assert got == expected, (num_beams, length_penalty, max_length)
        assert all(len(h) <= max_length - 1 for h in got)


def test_two_copies_of_a_model_decode_like_the_model():
    model = _tiny(4)
    ids, lens = _sources(4)
    assert ensemble_beam_search([model, model], ids, lens, num_beams=4, max_length=10) == model.translate(ids, lens, num_beams=4, max_length=10)


def test_greedy_ensemble_takes_the_argmax_of_the_mean_probability():
    """Reference: full teacher-forced forward of each model (no cache), probabilities averaged."""
    models = [_tiny(5, eos_bias=0.0), _tiny(6, eos_bias=0.0), _tiny(7, eos_bias=0.0)]
    for m in models:  # a large untied output layer: untrained members disagree, and their outputs vary by step
        m.mbart.lm_head.weight = torch.nn.Parameter(torch.randn(50, 16))
    ids, lens = _sources(5, batch=4)
    got = ensemble_beam_search(models, ids, lens, num_beams=1, max_length=9)
    for b in range(4):
        prefix = [5]
        for _ in range(7):  # 9 positions: the start token, at most 7 tokens, </s>
            probs = torch.stack([m(ids[b : b + 1], lens[b : b + 1], torch.tensor([prefix]))[0, -1].float().softmax(-1) for m in models])
            token = int(probs.mean(0).argmax())
            if token == 2:
                break
            prefix.append(token)
        assert got[b] == prefix[1:]
    # the mean differs from each member alone on at least one sentence here
    assert any(got != m.translate(ids, lens, num_beams=1, max_length=9) for m in models)


def test_members_must_share_vocabularies():
    with pytest.raises(ValueError, match="member 1: text vocabulary of 40 ids, member 0 has 50"):
        GlossToTextEnsemble([_tiny(0), _tiny(1, vocab=40)])
    with pytest.raises(ValueError, match="at least one model"):
        GlossToTextEnsemble([])
    with pytest.raises(ValueError, match="num_beams >= 1 and max_length >= 2"):
        ensemble_beam_search([_tiny(0)], *_sources(0), num_beams=0)


def _checkpoint(directory, tokenizer_dir, tok, glosses: list[str], seed: int):
    from pipelines.vocabulary import GlossVocabulary
    from training.checkpoint import save_gloss2text

    vocab = GlossVocabulary(glosses)
    model = GlossToText(build_scratch_mbart(len(tok), d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2,
                                            ffn_dim=32, max_position_embeddings=64, seed=seed), len(vocab),
                        src_lang_id=tok.lang_id("de_DE"), tgt_lang_id=tok.lang_id("de_DE")).eval()
    text = {"lowercase_glosses": True, "max_source_length": 50, "max_target_length": 50, "src_lang": "de_DE", "tgt_lang": "de_DE"}
    save_gloss2text(directory / "model", model=model, tokenizer_dir=tokenizer_dir, vocab=vocab, text=text)
    return model


def test_checkpoint_ensemble_loads_members_and_names_the_one_that_differs(tmp_path):
    from pipelines.text_tokenizer import SentencePieceTokenizer
    from training.checkpoint import load_gloss2text_ensemble

    tok = SentencePieceTokenizer.train(GERMAN, tmp_path / "tok", vocab_size=60, languages=["de_DE"])
    a = _checkpoint(tmp_path / "a", tmp_path / "tok", tok, ["regen", "sonne"], seed=0)
    b = _checkpoint(tmp_path / "b", tmp_path / "tok", tok, ["regen", "sonne"], seed=1)
    _checkpoint(tmp_path / "c", tmp_path / "tok", tok, ["regen", "wind"], seed=2)
    ck = load_gloss2text_ensemble([tmp_path / "a", tmp_path / "b"])
    assert ck.path == tmp_path / "a" and ck.vocab.glosses == ["regen", "sonne"] and len(ck.model.members) == 2
    ids, lens = torch.tensor([[3, 4]]), torch.tensor([2])
    assert ck.model.translate(ids, lens, num_beams=2, max_length=6) == ensemble_beam_search([a, b], ids, lens, num_beams=2, max_length=6)
    with pytest.raises(ValueError, match=r"c: its gloss vocabulary .* differs from .*a's"):
        load_gloss2text_ensemble([tmp_path / "a", tmp_path / "c"])
    other = SentencePieceTokenizer.train(GERMAN[:3], tmp_path / "tok2", vocab_size=40, languages=["de_DE"])
    _checkpoint(tmp_path / "d", tmp_path / "tok2", other, ["regen", "sonne"], seed=3)
    with pytest.raises(ValueError, match=r"d: its text tokenizer differs"):
        load_gloss2text_ensemble([tmp_path / "a", tmp_path / "d"])
