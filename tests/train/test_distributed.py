"""Two CPU processes under torchrun (Gloo) must end with identical weights, and only rank 0 writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import torch
import yaml
from safetensors.torch import load_file

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from safetensors.torch import save_file
    from apir.train.config import load_config, override
    from apir.train.loop import train

    config = override(load_config(sys.argv[1]), **{"data.root": sys.argv[2]})
    result = train(config, sys.argv[3], show_progress=False)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, os.path.join(sys.argv[4], f"rank{os.environ['RANK']}.safetensors"))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_on_cpu_gives_identical_weights(tiny_demo, tiny_train_config, tmp_path):
    config = dict(tiny_train_config, train={"epochs": 2, "seed": 0, "device": "cpu"})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    script = tmp_path / "ddp_worker.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(cfg),
        str(tiny_demo),
        str(tmp_path / "run"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # Training moved the weights away from their initial values (the ranks did not just sit still).
    torch.manual_seed(0)
    from apir.models import create_model

    init = create_model(config["model"]["name"], **config["model"]["kwargs"]).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)
    run = tmp_path / "run"
    assert (run / "last.safetensors").is_file() and (run / "log.csv").is_file()
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs, one writer
