"""V-L mapper (Chen et al., CVPR 2022, section 3.4): visual features -> the translation
encoder's input embeddings.

    gloss_features (B, T', 512)      --.
    backbone_features (B, T', C)     --+-> Linear -> ReLU -> Linear -> ReLU -> Linear -> (B, T', d_model)
    gloss_probs (B, T', V)           ----> Linear(V -> d_model, no bias), column v = gloss v's embedding

The default input is the visual head's gloss representations; the other two are the paper's
ablations. With gloss probabilities the map starts as the translation network's gloss embedding
table (`init_from_gloss_embeddings`), so a one-hot probability gives exactly the embedding the
Gloss2Text model reads for that gloss. Position embeddings are added after the mapper by mBART's
encoder (its learned positions; models/sign2text.py).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

MapperInput = Literal["gloss_features", "gloss_probs", "backbone_features"]


class VLMapper(nn.Module):
    """(B, T', in_features) -> (B, T', out_features). `input` names what it reads (MapperInput)."""

    def __init__(self, input: MapperInput, in_features: int, out_features: int, hidden: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.input, self.in_features, self.out_features = input, in_features, out_features
        self.hidden = hidden or out_features
        self.dropout = dropout
        if input == "gloss_probs":
            self.mlp = nn.Linear(in_features, out_features, bias=False)
        elif input in ("gloss_features", "backbone_features"):
            self.mlp = nn.Sequential(
                nn.Linear(in_features, self.hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(self.hidden, out_features),
            )
        else:
            raise ValueError(f"unknown V-L mapper input {input!r} (gloss_features, gloss_probs, backbone_features)")

    @torch.no_grad()
    def init_from_gloss_embeddings(self, table: torch.Tensor, class_to_gloss: list[int]) -> None:
        """gloss_probs only: column c := row class_to_gloss[c] of the translation network's gloss
        embedding table (G, d_model), so that class c's probability carries that gloss's embedding."""
        if self.input != "gloss_probs":
            raise ValueError(f"only a gloss_probs mapper starts from gloss embeddings (this one reads {self.input})")
        if len(class_to_gloss) != self.in_features or table.shape[1] != self.out_features:
            raise ValueError(f"{len(class_to_gloss)} classes x {table.shape[1]}-d embeddings do not fit a "
                             f"{self.in_features} -> {self.out_features} mapper")
        self.mlp.weight.copy_(table[torch.as_tensor(class_to_gloss)].T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def spec(self) -> dict:
        """Constructor arguments, JSON-able."""
        return {"input": self.input, "in_features": self.in_features, "out_features": self.out_features,
                "hidden": self.hidden, "dropout": self.dropout}
