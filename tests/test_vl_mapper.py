"""The V-L mapper (models/vl_mapper.py) and the Sign2Text model (models/sign2text.py) on tiny
networks: shapes of the three mapper inputs, the gloss-probability map starting as the Gloss2Text
gloss embeddings, mBART's position embeddings added to the mapped features, the frozen backbone,
and the CTC + translation loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.sign2text import SignToText, mapper_in_features
from models.translation import GlossToText, build_scratch_mbart
from models.two_stream import TwoStreamConfig, TwoStreamSLR
from models.vl_mapper import VLMapper

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V, D = 7, 16  # gloss classes (3 specials + 4 glosses), mBART width
SIZES = dict(num_classes=V, streams=["rgb"], width=0.0625, rgb_size=32, pyramid=False, head_hidden=12, head_ff=16, dropout=0.0)


def tiny_translator(seed: int = 0, max_positions: int = 64) -> GlossToText:
    mbart = build_scratch_mbart(40, d_model=D, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
                                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                max_position_embeddings=max_positions, seed=seed)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        mbart.model.encoder.embed_positions.weight.normal_()  # clearly non-zero positions
    return GlossToText(mbart, V, src_lang_id=5, tgt_lang_id=6)


def tiny_model(kind: str = "gloss_features", freeze: bool = True, **sizes) -> SignToText:
    torch.manual_seed(0)
    rec = TwoStreamSLR(TwoStreamConfig(**{**SIZES, **sizes}))
    translator = tiny_translator()
    mapper = VLMapper(kind, mapper_in_features(rec, kind), D, hidden=20)
    if kind == "gloss_probs":
        mapper.init_from_gloss_embeddings(translator.gloss_table().detach(), list(range(V)))
    return SignToText(rec, mapper, translator, freeze_backbone=freeze)


def clip_batch(B: int = 2, T: int = 16) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"frames": torch.rand(B, T, 3, 32, 32, generator=g), "frame_lengths": torch.tensor([T, T - 4])[:B],
            "keypoints": torch.rand(B, T, 133, 3, generator=g) * 32,
            "labels": torch.tensor([[3, 4], [5, 1]])[:B], "label_lengths": torch.tensor([2, 1])[:B],
            "decoder_input_ids": torch.tensor([[6, 10, 11, 12], [6, 13, 1, 1]])[:B],
            "text_labels": torch.tensor([[10, 11, 12, 2], [13, 2, 1, 1]])[:B]}


@pytest.mark.parametrize("kind,streams,width", [("gloss_features", ["rgb"], 12), ("gloss_probs", ["rgb"], V),
                                                ("backbone_features", ["rgb"], 52),
                                                ("backbone_features", ["rgb", "keypoint"], 104)])
def test_mapper_shapes_for_each_input(kind, streams, width):
    extra = dict(streams=streams, keypoint_size=8, lateral_kernel=(3, 3, 3)) if len(streams) == 2 else {}
    model = tiny_model(kind, **extra)
    assert model.mapper.in_features == width  # S3D width 1/16: 832/16 = 52 channels; fuse: keypoint + rgb
    batch = clip_batch()
    visual = model.visual(batch)
    x = visual["log_probs"][model.recognizer.gloss_feature_head].exp() if kind == "gloss_probs" else visual[kind]
    assert x.shape == (2, 4, width) and model.mapper(x).shape == (2, 4, D)
    embeds, mask = model.source(visual)
    assert embeds.shape == (2, 6, D) and mask.tolist() == [[1] * 6, [1] * 5 + [0]]  # T/4 = 4 and 3 steps, + </s> <lang>
    if kind != "gloss_probs":  # the MLP: three linear layers, two hidden layers of 20
        assert [m.out_features for m in model.mapper.mlp if isinstance(m, torch.nn.Linear)] == [20, 20, D]
    loss, parts = model(batch, label_smoothing=0.1)
    assert math.isclose(float(loss.detach()), float(parts["ctc"] + parts["translation"]), rel_tol=1e-6)
    assert torch.isfinite(loss)


def test_probability_map_starts_as_the_gloss_embeddings_and_matches_gloss2text():
    translator = tiny_translator()
    table = translator.gloss_table().detach()
    order = [0, 1, 2, 5, 3, 6, 4]  # recognizer class c is Gloss2Text gloss order[c] (vocabularies sorted differently)
    mapper = VLMapper("gloss_probs", V, D)
    mapper.init_from_gloss_embeddings(table, order)
    assert mapper.mlp.bias is None
    for c, g in enumerate(order):
        assert torch.equal(mapper.mlp.weight[:, c], table[g])
    # a one-hot probability gives exactly the embedding Gloss2Text reads for that gloss
    classes = torch.tensor([[3, 5, 4], [6, 3, 0]])
    lengths = torch.tensor([3, 2])
    embeds, mask = translator.append_source_suffix(mapper(F.one_hot(classes, V).float()) * translator.embed_scale, lengths)
    want, want_mask = translator.embed_source(torch.tensor([[5, 6, 3], [4, 5, 1]]), lengths)
    assert torch.allclose(embeds, want, atol=1e-6) and torch.equal(mask, want_mask)
    with pytest.raises(ValueError, match="only a gloss_probs mapper"):
        VLMapper("gloss_features", 12, D).init_from_gloss_embeddings(table, order)
    with pytest.raises(ValueError, match="6 classes x 16-d embeddings do not fit a 7 -> 16 mapper"):
        mapper.init_from_gloss_embeddings(table, order[:6])
    with pytest.raises(ValueError, match="unknown V-L mapper input 'logits'"):
        VLMapper("logits", V, D)


def test_position_embeddings_are_added_to_the_mapped_features():
    """mBART's encoder input is scale x mapper(gloss representations), `</s> <lang>` after each
    clip's last step, plus the encoder's learned position embeddings (offset 2)."""
    model = tiny_model().eval()
    seen = {}
    hook = model.translator.mbart.model.encoder.layernorm_embedding.register_forward_pre_hook(
        lambda _, args: seen.setdefault("x", args[0].detach().clone()))
    batch = clip_batch()
    with torch.no_grad():
        visual = model.visual(batch)
        embeds, mask = model.source(visual)
        model.translator.mbart.model.encoder(inputs_embeds=embeds, attention_mask=mask)
    hook.remove()
    mapped = model.mapper(visual["gloss_features"]) * math.sqrt(D)
    positions = model.translator.mbart.model.encoder.embed_positions.weight[2:8]
    suffix = model.translator.mbart.get_input_embeddings().weight[[2, 5]] * math.sqrt(D)  # </s>, <lang>, scaled as mBART scales tokens
    assert torch.allclose(seen["x"][0, :4], mapped[0] + positions[:4], atol=1e-5)
    assert torch.allclose(seen["x"][0, 4:6], suffix + positions[4:6], atol=1e-5)
    assert torch.allclose(seen["x"][1, :3], mapped[1, :3] + positions[:3], atol=1e-5)  # 12 frames: 3 steps
    assert torch.allclose(seen["x"][1, 3:5], suffix + positions[3:5], atol=1e-5)


def test_frozen_backbone_takes_no_gradient_and_cached_features_train_the_same():
    model = tiny_model()
    model.train()
    assert not model.recognizer.backbones["rgb"].training and model.recognizer.heads["rgb"].training
    batch = clip_batch()
    loss, _ = model(batch)
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert not any(n.startswith("recognizer.backbones.") for n in grads)
    assert {"recognizer.heads.rgb.proj.weight", "mapper.mlp.0.weight", "translator.mbart.model.encoder.layers.0.fc1.weight"} <= grads
    assert not any(p.requires_grad for p in model.recognizer.backbones.parameters())

    # the backbone's features computed once (no autograd, eval mode) give the same loss
    with torch.no_grad():
        cached = model.recognizer.backbone(batch["frames"], batch["frame_lengths"])
    from_cache = {**{k: v for k, v in batch.items() if k not in ("frames", "frame_lengths", "keypoints")},
                  "stream_features": cached["stream_features"], "lengths": cached["lengths"]}
    torch.manual_seed(5)
    a, _ = model(batch)
    torch.manual_seed(5)
    b, _ = model(from_cache)
    assert torch.allclose(a, b, atol=1e-6)

    tuned = tiny_model(freeze=False)
    loss, _ = tuned(batch)
    loss.backward()
    assert tuned.recognizer.backbones["rgb"].training
    assert tuned.recognizer.backbones["rgb"].block1.conv.conv_s.weight.grad is not None


def test_config_round_trip_and_too_long_sources():
    model = tiny_model("gloss_probs").eval()
    again = SignToText.from_config_dict(model.config_dict())
    again.load_state_dict(model.state_dict())
    again.eval()
    batch = clip_batch()
    with torch.no_grad():
        assert torch.equal(model.source(model.visual(batch))[0], again.source(again.visual(batch))[0])
    ids, visual = again.translate(batch, num_beams=2, max_length=6)
    assert len(ids) == 2 and all(len(s) <= 5 for s in ids) and visual["lengths"].tolist() == [4, 3]
    short = SignToText(model.recognizer, model.mapper, tiny_translator(max_positions=5))
    with pytest.raises(ValueError, match="a source of 4 steps .* exceeds the mBART's max_position_embeddings 5"):
        short.source(short.visual(batch))
