"""The checkpoint contract (training/checkpoint.py) and the resumable train state (training/state.py):
round trips, checkpoints of the layout before the contract, errors that say what a path holds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml

from models.two_stream import TwoStreamConfig, TwoStreamSLR
from pipelines.video_collate import VideoCollateConfig
from pipelines.vocabulary import GlossVocabulary
from training import state as train_state
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_gloss2text,
    load_sign2gloss,
    resolve_checkpoint,
    save_sign2gloss,
)

SIZES = dict(num_classes=7, streams=["rgb"], width=0.0625, rgb_size=32, pyramid=False, head_hidden=16, head_ff=16)


def _recognizer() -> TwoStreamSLR:
    torch.manual_seed(0)
    return TwoStreamSLR(TwoStreamConfig(**SIZES)).eval()


def _same_outputs(a, b) -> bool:
    frames, lengths = torch.rand(1, 8, 3, 32, 32), torch.tensor([8])
    with torch.no_grad():
        return torch.equal(a(frames, lengths)["log_probs"]["rgb"], b(frames, lengths)["log_probs"]["rgb"])


def test_sign2gloss_round_trip_and_run_directory(tmp_path):
    model, vocab = _recognizer(), GlossVocabulary(["A", "B", "C", "D"])
    ckpt = tmp_path / "run" / "checkpoint_000002"
    save_sign2gloss(ckpt / "model", model=model, vocab=vocab, collate=VideoCollateConfig(height=32, width=32), frame_stride=2,
                    keypoint_backend="mediapipe")
    (ckpt / "metrics.json").write_text(json.dumps({"epoch": 2, "dev_wer": 12.5}))
    (tmp_path / "run" / "best_checkpoint.json").write_text(json.dumps({"best_checkpoint": str(ckpt)}))
    loaded = load_sign2gloss(tmp_path / "run")
    assert loaded.path == ckpt and resolve_checkpoint(tmp_path / "run") == ckpt
    assert loaded.vocab.glosses == ["A", "B", "C", "D"] and loaded.frame_stride == 2 and loaded.collate.height == 32
    assert loaded.keypoint_backend == "mediapipe" and loaded.metrics["dev_wer"] == 12.5 and not loaded.uses_keypoints
    assert _same_outputs(model, loaded.model)
    assert type(load_checkpoint(ckpt)) is type(loaded)
    with pytest.raises(CheckpointError, match="a sign2gloss checkpoint, not a gloss2text one"):
        load_gloss2text(ckpt)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint .* nor a run directory"):
        load_sign2gloss(tmp_path)
    config = json.loads((ckpt / "model" / "config.json").read_text())
    (ckpt / "model" / "config.json").write_text(json.dumps({**config, "format": 99}))
    with pytest.raises(CheckpointError, match="checkpoint format 99, this code reads format 1"):
        load_sign2gloss(ckpt)


def test_sign2gloss_checkpoint_of_the_old_layout_still_loads(tmp_path):
    """Before the contract: model/{weights.pt, config.json (a bare TwoStreamConfig)}, the vocabulary and
    run config beside model/."""
    model = _recognizer()
    ckpt = tmp_path / "old"
    (ckpt / "model").mkdir(parents=True)
    torch.save(model.state_dict(), ckpt / "model" / "weights.pt")
    (ckpt / "model" / "config.json").write_text(json.dumps(model.config.model_dump(mode="json")))
    GlossVocabulary(["A", "B", "C", "D"]).save(ckpt / "gloss_vocab.json")
    (ckpt / "config.yaml").write_text(yaml.safe_dump({"data": {"collate": {"height": 32, "width": 32}, "frame_stride": 3}}))
    loaded = load_checkpoint(ckpt)
    assert loaded.vocab.glosses == ["A", "B", "C", "D"] and loaded.frame_stride == 3 and loaded.collate.width == 32
    assert _same_outputs(model, loaded.model)


def test_gloss2text_checkpoint_of_the_old_layout_still_loads(tmp_path):
    from _translation_helpers import GERMAN

    from models.translation import GlossToText, build_scratch_mbart
    from pipelines.text_tokenizer import SentencePieceTokenizer

    tok = SentencePieceTokenizer.train(GERMAN, tmp_path / "old" / "tokenizer", vocab_size=60, languages=["de_DE"])
    model = GlossToText(build_scratch_mbart(len(tok), d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2,
                                            ffn_dim=32, max_position_embeddings=64), 9,
                        src_lang_id=tok.lang_id("de_DE"), tgt_lang_id=tok.lang_id("de_DE")).eval()
    ckpt = tmp_path / "old"
    (ckpt / "model").mkdir()
    config = model.config_dict()
    (ckpt / "model" / "mbart_config.json").write_text(json.dumps(config["mbart"]))
    (ckpt / "model" / "translation_model.json").write_text(json.dumps(config["wrapper"]))
    torch.save(model.state_dict(), ckpt / "model" / "model.pt")
    GlossVocabulary(["regen", "sonne"]).save(ckpt / "gloss_vocab.json")
    (ckpt / "config.yaml").write_text(yaml.safe_dump({"data": {"lowercase_glosses": True, "max_source_length": 50}}))
    loaded = load_checkpoint(ckpt)
    assert loaded.vocab.glosses == ["regen", "sonne"] and loaded.text["max_source_length"] == 50 and len(loaded.tokenizer) == len(tok)
    ids, lens, dec = torch.tensor([[5, 6]]), torch.tensor([2]), torch.tensor([[5, 20, 21]])
    assert torch.equal(model(ids, lens, dec), loaded.model(ids, lens, dec))


def test_train_state_restores_model_optimizer_schedule_and_every_rng(tmp_path):
    def fresh():
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    model, opt, sched = fresh()
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
    progress = train_state.Progress(epoch=3, step=3, history=[{"epoch": e, "elapsed_s": 10.0 * e} for e in (1, 2, 3)])
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    state = train_state.capture(progress, optimizer=opt, scheduler=sched)
    want = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    (tmp_path / "model").mkdir()
    torch.save(model.state_dict(), tmp_path / "model" / "weights.pt")  # no weights in the state: model/weights.pt's
    torch.save(state, tmp_path / "train_state.pt")

    model2, opt2, sched2 = fresh()
    got_progress, _ = train_state.restore(tmp_path, model=model2, optimizer=opt2, scheduler=sched2)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == want
    assert (got_progress.epoch, got_progress.step, got_progress.elapsed_before) == (3, 3, 30.0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3) and sched2.last_epoch == 3
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    torch.save({**state, "model": {k: v * 0 for k, v in model.state_dict().items()}}, tmp_path / "train_state.pt")
    train_state.restore(tmp_path, model=model2, optimizer=opt2, scheduler=sched2)  # weights in the state win (an EMA export)
    assert float(model2.weight.detach().abs().sum()) == 0.0
    with pytest.raises(FileNotFoundError, match="no train_state.pt; not a resumable checkpoint"):
        train_state.restore(tmp_path / "model", model=model2, optimizer=opt2, scheduler=sched2)
