"""training.evaluation.decode_heads: greedy and beam decoding over the leading classes only (a
mixed-training model decodes its primary glosses, never the auxiliary-only classes after them)."""

from __future__ import annotations

import torch

from training.evaluation import decode_heads


def _outputs() -> dict:
    """One clip of 3 steps over 5 classes (blank 0, primary 1-2, auxiliary-only 3-4): the auxiliary
    class 3 is the most likely at step 0, primary 1 second; step 1 is blank; step 2 is primary 2."""
    p = torch.tensor([[0.05, 0.30, 0.05, 0.55, 0.05],
                      [0.90, 0.02, 0.02, 0.03, 0.03],
                      [0.10, 0.05, 0.70, 0.05, 0.10]])
    return {"log_probs": {"rgb": p.log()[None]}, "lengths": torch.tensor([3])}


def test_decoding_over_the_leading_classes_never_emits_the_others():
    for beam in (1, 5):
        assert decode_heads(_outputs(), ["rgb"], beam)["rgb"] == [[3, 2]]  # every class
        assert decode_heads(_outputs(), ["rgb"], beam, num_classes=3)["rgb"] == [[1, 2]]  # primary only
        assert decode_heads(_outputs(), ["rgb"], beam, num_classes=5)["rgb"] == [[3, 2]]
