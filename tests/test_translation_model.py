"""The mBART Gloss2Text wrapper: source embedding, loss, decoding, vocabulary pruning."""

from __future__ import annotations

import json

import pytest
import torch
from _translation_helpers import GERMAN, tiny_mbart_checkpoint

from models.translation import (
    GlossToText,
    build_scratch_mbart,
    load_pruned_mbart,
    prune_mbart,
    prune_mbart_checkpoint,
    symmetric_kl,
    translation_loss,
)


def _tiny(mode="table", seed=0):
    mbart = build_scratch_mbart(50, d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
                                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=64, seed=seed)
    subwords = [[3], [], [3]] + [[10 + g, 30 + g] for g in range(12)]
    return GlossToText(mbart, 15, src_lang_id=4, tgt_lang_id=5, gloss_subwords=subwords, gloss_embedding=mode).eval()


def test_source_is_scaled_glosses_then_eos_and_language_token():
    model = _tiny()
    ids = torch.tensor([[5, 6, 7], [8, 1, 1]])
    x, mask = model.embed_source(ids, torch.tensor([3, 1]))
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    scale = 16**0.5
    shared = model.mbart.get_input_embeddings()
    assert torch.allclose(x[0, :3], model.gloss_embedding.weight[[5, 6, 7]] * scale)
    assert torch.allclose(x[0, 3], shared.weight[2] * scale) and torch.allclose(x[0, 4], shared.weight[4] * scale)  # </s> de
    assert torch.allclose(x[1, 1], shared.weight[2] * scale) and torch.allclose(x[1, 2], shared.weight[4] * scale)
    # table mode starts each gloss at the mean of its sub-token embeddings
    assert torch.allclose(model.gloss_embedding.weight[5], shared.weight[[12, 32]].mean(0))


def test_subwords_mode_shares_the_text_embedding():
    model = _tiny("subwords")
    shared = model.mbart.get_input_embeddings().weight
    assert torch.allclose(model.gloss_table()[7], shared[[14, 34]].mean(0))
    with torch.no_grad():
        shared[14] += 1.0  # changing a text sub-word changes the gloss that contains it
    assert torch.allclose(model.gloss_table()[7], shared[[14, 34]].mean(0))


def test_masked_loss_equals_full_logits_loss_and_padding_does_not_leak():
    model = _tiny()
    ids, lens = torch.tensor([[5, 6, 7], [8, 1, 1]]), torch.tensor([3, 1])
    dec = torch.tensor([[5, 20, 21, 22], [5, 23, 1, 1]])
    labels = torch.tensor([[20, 21, 22, 2], [23, 2, 1, 1]])
    logits = model(ids, lens, dec)
    assert logits.shape == (2, 4, 50)
    expected = translation_loss(logits, labels, pad_id=1, label_smoothing=0.2)
    assert torch.allclose(model(ids, lens, dec, labels=labels, label_smoothing=0.2), expected, atol=1e-6)
    # sample 2 alone (no padding) gives the same logits as inside the padded batch
    alone = model(ids[1:, :1], lens[1:], dec[1:, :2])
    assert torch.allclose(alone[0], logits[1, :2], atol=1e-5)


def test_symmetric_kl_on_a_hand_computed_pair():
    p, q = torch.tensor([[0.5, 0.5]]).log(), torch.tensor([[0.9, 0.1]]).log()
    # KL(p||q) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.510826; KL(q||p) = 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368064
    assert symmetric_kl(p, q).item() == pytest.approx((0.510826 + 0.368064) / 2, abs=1e-6)
    assert symmetric_kl(torch.cat([p, q]), torch.cat([p, q])).item() == pytest.approx(0.0, abs=1e-7)


def test_rdrop_loss_is_two_dropout_passes_plus_alpha_times_their_kl():
    mbart = build_scratch_mbart(50, d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
                                dropout=0.3, attention_dropout=0.1, activation_dropout=0.1, max_position_embeddings=64, seed=0)
    model = GlossToText(mbart, 15, src_lang_id=4, tgt_lang_id=5, gloss_subwords=[[3], [], [3]] + [[10 + g] for g in range(12)]).train()
    ids, lens = torch.tensor([[5, 6, 7], [8, 1, 1]]), torch.tensor([3, 1])
    dec = torch.tensor([[5, 20, 21, 22], [5, 23, 1, 1]])
    labels = torch.tensor([[20, 21, 22, 2], [23, 2, 1, 1]])
    torch.manual_seed(7)
    loss = model(ids, lens, dec, labels=labels, label_smoothing=0.1, rdrop_alpha=2.5)
    # reference: the doubled batch's full logits under the same dropout masks (same seed)
    torch.manual_seed(7)
    logits = model(torch.cat([ids, ids]), torch.cat([lens, lens]), torch.cat([dec, dec]))
    keep = labels.ne(1)
    kl = symmetric_kl(logits[:2][keep], logits[2:][keep])
    assert kl.item() > 1e-3  # the two passes saw different dropout masks
    expected = translation_loss(logits, torch.cat([labels, labels]), pad_id=1, label_smoothing=0.1) + 2.5 * kl
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert model.gloss_embedding.weight.grad is not None
    # without dropout both passes agree: R-Drop's loss is the plain loss
    model.eval()
    assert torch.allclose(model(ids, lens, dec, labels=labels, rdrop_alpha=2.5), model(ids, lens, dec, labels=labels), atol=1e-6)


def test_translate_greedy_matches_step_by_step_argmax():
    model = _tiny(seed=3)
    ids, lens = torch.tensor([[5, 9, 7, 11]]), torch.tensor([4])
    out = model.translate(ids, lens, num_beams=1, max_length=8)[0]
    dec = [5]
    for _ in range(7):
        nxt = int(model(ids, lens, torch.tensor([dec]))[0, -1].argmax())
        if nxt == 2:
            break
        dec.append(nxt)
    assert out == dec[1 : len(out) + 1] and len(out) <= 7
    beams = model.translate(ids, lens, num_beams=3, max_length=8)
    assert len(beams) == 1 and all(0 <= t < 50 for t in beams[0])


def test_config_dict_round_trip_through_json():
    model = _tiny("subwords").eval()
    again = GlossToText.from_config_dict(json.loads(json.dumps(model.config_dict())))
    again.load_state_dict(model.state_dict())
    again.eval()
    ids, lens, dec = torch.tensor([[5, 6]]), torch.tensor([2]), torch.tensor([[5, 20, 21]])
    assert torch.equal(model(ids, lens, dec), again(ids, lens, dec))
    assert again.spec() == model.spec() and again.config.d_model == model.config.d_model


def test_pruned_mbart_logits_equal_full_model_on_kept_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    full, tok = tiny_mbart_checkpoint(tmp_path / "full")
    texts = GERMAN[2:4]  # "training split": prune to these two sentences
    glosses = ["regen", "morgen", "sonne"]
    summary = prune_mbart_checkpoint(tmp_path / "full", tmp_path / "pruned", texts=texts, glosses=glosses)
    pruned, ptok = load_pruned_mbart(tmp_path / "pruned")
    kept = ptok.kept_ids
    assert summary["full_vocab"] == len(tok) and summary["pruned_vocab"] == len(kept) == pruned.config.vocab_size < len(tok)
    assert kept[:4] == [0, 1, 2, 3] and tok.lang_code_to_id["de_DE"] in kept and tok.mask_token_id in kept
    id_map = json.loads((tmp_path / "pruned" / "id_map.json").read_text())
    assert all(kept[n] == int(o) for o, n in id_map.items())

    # the same sentence through both models: encoder and decoder ids mapped old -> new
    full.eval(), pruned.eval()
    old_src = tok(texts[0], add_special_tokens=True)["input_ids"]  # text </s> de_DE
    old_dec = [tok.lang_code_to_id["de_DE"], *tok(texts[1], add_special_tokens=False)["input_ids"]]
    new_src = [id_map[str(i)] for i in old_src]
    new_dec = [id_map[str(i)] for i in old_dec]
    with torch.no_grad():
        lf = full(input_ids=torch.tensor([old_src]), decoder_input_ids=torch.tensor([old_dec])).logits
        lp = pruned(input_ids=torch.tensor([new_src]), decoder_input_ids=torch.tensor([new_dec])).logits
    assert lp.shape[-1] == len(kept)
    assert torch.allclose(lp, lf[..., kept], atol=1e-5)
    assert not torch.allclose(pruned.final_logits_bias, torch.zeros_like(pruned.final_logits_bias))

    # gloss embedding table: each gloss the mean of its sub-token embeddings
    table = torch.load(tmp_path / "pruned" / "gloss_embeddings.pt")
    assert table["glosses"] == glosses
    emb = pruned.get_input_embeddings().weight
    for g, (sub, row) in enumerate(zip(table["subwords"], table["weight"])):
        assert sub == ptok.encode(glosses[g]) and torch.allclose(row, emb[sub].mean(0))
        assert torch.allclose(emb[sub], full.get_input_embeddings().weight[[kept[i] for i in sub]])


def test_prune_mbart_rejects_bad_id_lists():
    mbart = build_scratch_mbart(20, d_model=8, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=8)
    with pytest.raises(ValueError, match="start with 0, 1, 2, 3"):
        prune_mbart(mbart, [0, 1, 3, 5])
    with pytest.raises(ValueError, match="sorted"):
        prune_mbart(mbart, [0, 1, 2, 3, 9, 7])


def test_unseen_glosses_embed_as_the_mean_of_their_subwords_from_current_weights():
    for mode in ("table", "subwords"):
        model = _tiny(mode)
        model.set_unseen_glosses([[20, 21, 22], [7]])
        shared = model.mbart.get_input_embeddings().weight
        x, _ = model.embed_source(torch.tensor([[15, 6, 16]]), torch.tensor([3]))
        scale = 16**0.5
        assert torch.allclose(x[0, 0], shared[[20, 21, 22]].mean(0) * scale, atol=1e-6)
        assert torch.allclose(x[0, 1], model.gloss_table()[6] * scale)
        assert torch.allclose(x[0, 2], shared[7] * scale)
        with torch.no_grad():
            shared[7] += 1.0  # follows the trained text embedding
        x, _ = model.embed_source(torch.tensor([[16]]), torch.tensor([1]))
        assert torch.allclose(x[0, 0], shared[7] * scale)
        # an inference-time extension: not part of the saved weights or the spec
        assert not any("unseen" in k for k in model.state_dict()) and model.spec()["num_glosses"] == 15
        model.set_unseen_glosses([])
        with pytest.raises(IndexError):
            model.embed_source(torch.tensor([[15]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="at least one sub-token"):
        model.set_unseen_glosses([[3], []])


def test_freeze_embeddings_keeps_gloss_text_and_output_rows_fixed():
    model = _tiny().train()
    model.freeze_embeddings()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"gloss_embedding.weight", "mbart.model.shared.weight"}  # tied: encoder, decoder and lm_head
    assert not model.mbart.get_output_embeddings().weight.requires_grad
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids, lens = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    model(ids, lens, torch.tensor([[5, 20, 21]]), labels=torch.tensor([[20, 21, 2]])).backward()
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["gloss_embedding.weight"], before["gloss_embedding.weight"])
    assert torch.equal(after["mbart.model.shared.weight"], before["mbart.model.shared.weight"])
    assert not torch.equal(after["mbart.model.encoder.layers.0.fc1.weight"], before["mbart.model.encoder.layers.0.fc1.weight"])


def test_freeze_embeddings_of_an_untied_mbart_freezes_every_token_table_but_not_the_output_layer():
    from transformers import MBartConfig, MBartForConditionalGeneration

    config = MBartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2, tie_word_embeddings=False)
    model = GlossToText(MBartForConditionalGeneration(config), 15, src_lang_id=4, tgt_lang_id=5)
    model.freeze_embeddings()
    m = model.mbart.model
    tables = (m.shared.weight, m.encoder.embed_tokens.weight, m.decoder.embed_tokens.weight, model.gloss_embedding.weight)
    assert not any(t.requires_grad for t in tables)
    assert model.mbart.lm_head.weight.data_ptr() != m.shared.weight.data_ptr() and model.mbart.lm_head.weight.requires_grad
