"""Sign2Text (Chen et al., CVPR 2022): the recognition network, the V-L mapper and the Gloss2Text
network's mBART in one model, trained with CTC + translation cross-entropy.

    frames (+ keypoints) -> TwoStreamSLR.backbone -> stream features {stream: (B, T', C)}
                            (or the same features read from a cache: `stream_features` in the batch)
      -> TwoStreamSLR.head_outputs -> gloss log-probs (CTC) and gloss representations (B, T', 512)
      -> VLMapper -> x embed_scale -> `</s> <src_lang>` appended -> mBART encoder, which adds its
         learned position embeddings -> mBART decoder -> text

With `freeze_backbone` (the paper's joint training) the backbone (S3D streams, laterals, pyramids
and their auxiliary heads: `models.two_stream.BACKBONE_PARTS`) takes no gradient, runs in eval
mode (BatchNorm statistics kept) and without autograd, and the auxiliary CTC losses are left out,
so features computed once per video give exactly the same training as running it every step.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.translation import GlossToText
from models.two_stream import BACKBONE_PARTS, TwoStreamConfig, TwoStreamSLR
from models.vl_mapper import VLMapper


class SignToText(nn.Module):
    def __init__(self, recognizer: TwoStreamSLR, mapper: VLMapper, translator: GlossToText, *, freeze_backbone: bool = True):
        super().__init__()
        self.recognizer, self.mapper, self.translator = recognizer, mapper, translator
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for module in self.backbone_modules():
                module.requires_grad_(False)
        self.train()

    def backbone_modules(self) -> list[nn.Module]:
        return [getattr(self.recognizer, p) for p in BACKBONE_PARTS if hasattr(self.recognizer, p)]

    def train(self, mode: bool = True) -> "SignToText":
        super().train(mode)
        if self.freeze_backbone:
            for module in self.backbone_modules():
                module.eval()
        return self

    def visual(self, batch: dict) -> dict:
        """The recognition network on a batch: with `stream_features` ({stream: (B, T', C)}) and
        `lengths` (B,) the heads alone, else the backbone first on `frames` (B, T, 3, H, W),
        `frame_lengths` and `keypoints` (B, T, 133, 3) when the model has a keypoint stream (and
        optional `crop_zoom`). Returns TwoStreamSLR.forward's dict (no auxiliary outputs when the
        backbone is frozen)."""
        rec = self.recognizer
        if "stream_features" in batch:
            out = {"stream_features": batch["stream_features"], "lengths": batch["lengths"], "aux_log_probs": {}, "aux_lengths": {}}
        else:
            keypoints = batch.get("keypoints") if "keypoint" in rec.config.streams else None
            crop_zoom = batch.get("crop_zoom") if rec.config.heatmap_sigma_follows_crop else None
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
                out = rec.backbone(batch.get("frames"), batch["frame_lengths"], keypoints, crop_zoom=crop_zoom)
            if self.freeze_backbone:
                out.update(aux_log_probs={}, aux_lengths={})
        return {**out, **rec.head_outputs(out["stream_features"], out["lengths"])}

    def source(self, visual: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder inputs from `visual`'s output: the mapper's input kind -> (B, T'+2, d_model)
        embeddings (scaled as mBART scales token embeddings, `</s> <src_lang>` appended) and the
        attention mask (B, T'+2)."""
        kind = self.mapper.input
        if kind == "gloss_probs":
            x = visual["log_probs"][self.recognizer.gloss_feature_head].exp()
        else:
            x = visual[kind]
        x = self.mapper(x) * self.translator.embed_scale
        return self.translator.append_source_suffix(x, visual["lengths"])

    def forward(self, batch: dict, *, label_smoothing: float = 0.0, ctc_weight: float = 1.0,
                translation_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Training loss of a batch (visual inputs as `visual` reads them, `labels` / `label_lengths`
        the gloss ids for CTC, `decoder_input_ids` / `text_labels` (B, L) the text as Gloss2Text
        reads it): ctc_weight x the recognizer's CTC loss + translation_weight x the label-smoothed
        cross-entropy. Returns (total, parts: detached `ctc`, `translation`, the CTC parts,
        `infeasible`, `total`)."""
        visual = self.visual(batch)
        ctc, ctc_parts = self.recognizer.loss(visual, batch["labels"], batch["label_lengths"])
        embeds, mask = self.source(visual)
        ce = self.translator.forward_embeds(embeds, mask, batch["decoder_input_ids"], labels=batch["text_labels"],
                                            label_smoothing=label_smoothing)
        total = ctc_weight * ctc + translation_weight * ce
        parts = {k: v for k, v in ctc_parts.items() if k != "total"}
        parts.update(ctc=ctc.detach(), translation=ce.detach(), total=total.detach())
        return total, parts

    @torch.no_grad()
    def translate(self, batch: dict, *, num_beams: int = 5, length_penalty: float = 1.0,
                  max_length: int = 100) -> tuple[list[list[int]], dict]:
        """Text ids per sample (beam search; no start, `</s>` or padding) and the visual outputs
        (gloss log-probs for decoding glosses)."""
        visual = self.visual(batch)
        embeds, mask = self.source(visual)
        ids = self.translator.translate_embeds(embeds, mask, num_beams=num_beams, length_penalty=length_penalty,
                                               max_length=max_length)
        return ids, visual

    # ---- persistence (the checkpoint files are written by training/checkpoint.py) --------------
    def config_dict(self) -> dict:
        """Enough to rebuild the module (JSON-able)."""
        return {"recognizer": self.recognizer.config.model_dump(mode="json"), "mapper": self.mapper.spec(),
                "translator": self.translator.config_dict(), "freeze_backbone": self.freeze_backbone}

    @classmethod
    def from_config_dict(cls, config: dict) -> "SignToText":
        """An untrained SignToText of the shape `config_dict()` describes (load weights after)."""
        return cls(TwoStreamSLR(TwoStreamConfig.model_validate(config["recognizer"])), VLMapper(**config["mapper"]),
                   GlossToText.from_config_dict(config["translator"]), freeze_backbone=config["freeze_backbone"])


def mapper_in_features(recognizer: TwoStreamSLR, kind: str) -> int:
    """Width of the mapper's input kind for this recognizer: head_hidden (gloss_features), the
    gloss vocabulary (gloss_probs) or the gloss-feature head's input width (backbone_features)."""
    c = recognizer.config
    if kind == "gloss_features":
        return c.head_hidden
    if kind == "gloss_probs":
        return c.num_classes
    return recognizer.heads[recognizer.gloss_feature_head].proj.in_features
