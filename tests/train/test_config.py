from __future__ import annotations

from pathlib import Path

import pytest

from apir.errors import ApirError
from apir.train.config import dump_config, load_config, override

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.model.name in {"unet", "rcan", "nafnet"}


def test_paper_configs_match_the_paper():
    for name in ("paper_rcan", "paper_unet"):
        c = load_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml")
        assert (c.optim.name, c.optim.lr, c.loss.alpha, c.loss.normalize, c.train.epochs) == (
            "adam",
            1e-4,
            0.3,
            "all",
            350,
        )


def test_typos_and_bad_values_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ApirError, match=r"optim\.learning_rate: unknown key"):
        load_config(bad)
    bad.write_text("loss:\n  alpha: 3\n")
    with pytest.raises(ApirError, match=r"loss\.alpha"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ApirError, match="mapping"):
        load_config(bad)
    with pytest.raises(ApirError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_override_and_round_trip(tmp_path):
    c = override(load_config(None), **{"train.epochs": 3, "data.root": "x", "model.name": None})
    assert c.train.epochs == 3 and c.data.root == "x" and c.model.name == "nafnet"
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(c))
    assert load_config(p) == c
