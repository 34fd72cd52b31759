from __future__ import annotations

import pytest

from common.config import ConfigError, StrictModel, config_hash, load_config, save_config


class Optim(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.998)


class Example(StrictModel):
    out_dir: str
    epochs: int = 2
    optim: Optim = Optim()


def test_yaml_plus_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("out_dir: /tmp/x\noptim:\n  lr: 0.01\n")
    cfg = load_config(Example, path, ["epochs=5", "optim.betas=[0.8,0.9]"])
    assert (cfg.out_dir, cfg.epochs, cfg.optim.lr, cfg.optim.betas) == ("/tmp/x", 5, 0.01, (0.8, 0.9))


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("out_dir: /tmp/x\n")
    with pytest.raises(ConfigError, match=r"c.yaml: invalid Example:\n  optim.lrr: unknown key"):
        load_config(Example, path, ["optim.lrr=3"])


def test_wrong_type_and_missing_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(Example, path)
    message = str(info.value)
    assert "epochs: Input should be a valid integer" in message and "'many'" in message
    assert "out_dir: Field required" in message


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(Example, None, ["epochs"])
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(Example, tmp_path / "nope.yaml")


def test_save_round_trip_and_hash(tmp_path):
    cfg = load_config(Example, None, ["out_dir=o", "epochs=3"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(Example, tmp_path / "resolved.yaml")
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(Example, None, ["out_dir=o", "epochs=4"])) != config_hash(cfg)
