"""apir adapt: fine-tunes a base model on one category's train/good and never reads the test split."""

from __future__ import annotations

import pytest

import apir.data.datasets as datasets
from apir.cli import main
from apir.models import create_model
from apir.models.checkpoint import read_checkpoint, save_checkpoint
from apir.train.adapt import adapt, adapt_config


@pytest.fixture()
def base(tmp_path):
    path = tmp_path / "base.safetensors"
    save_checkpoint(path, create_model("nafnet", width=8, unshuffle=2, level_input=True))
    return path


def test_adapt_reads_only_train_good_of_its_category(tiny_demo_copy, base, tmp_path, monkeypatch):
    read: list[str] = []
    real = datasets.load_sample

    def spy(sample):
        read.append(str(sample.image))
        return real(sample)

    monkeypatch.setattr(datasets, "load_sample", spy)
    # the test split is unreadable: adapt must not need it
    for f in (tiny_demo_copy / "brick" / "test").rglob("*.png"):
        f.write_bytes(b"not a png")
    result = adapt(tiny_demo_copy, "brick", tmp_path / "run", minutes=0.05, base=base, show_progress=False)
    assert read and all("/brick/train/good/" in p for p in read)
    tensors, header = read_checkpoint(result.run_dir / "last.safetensors")
    assert header["model"]["level_input"] is True
    assert header["config"]["data"]["categories"] == ["brick"]
    assert header["config"]["data"]["degradation"] == "blind_level"


def test_adapt_cli_and_time_budget(tiny_demo_copy, base, tmp_path, capsys):
    rc = main(
        ["adapt", "--data", str(tiny_demo_copy), "--category", "coffee", "-o", str(tmp_path / "r"),
         "--minutes", "0.05", "--model", str(base)]
    )  # fmt: skip
    assert rc == 0
    assert "--model" in capsys.readouterr().out
    assert (tmp_path / "r" / "best.safetensors").is_file()
    assert main(["adapt", "--data", str(tiny_demo_copy), "--category", "nope", "-o", str(tmp_path / "s"),
                 "--model", str(base)]) != 0  # fmt: skip


def test_adapt_config_refuses_a_zero_budget(tiny_demo, base):
    from apir.errors import ApirError

    with pytest.raises(ApirError, match="minutes"):
        adapt_config(tiny_demo, "brick", base, minutes=0)


def test_adapt_survival_sets_the_paired_term(tiny_demo, base):
    assert adapt_config(tiny_demo, "brick", base, survival=0.2).loss.pair_weight == 0.2
    assert adapt_config(tiny_demo, "brick", base).loss.pair_weight == 0.0
