"""torchrun with 2 CPU processes (gloo) gives exactly the single-process result."""

import json
import os
import subprocess
import sys

import pytest

ARGS = ["-O", "dataset.preset=tiny", "--epochs", "1", "--workers", "1", "--device", "cpu", "--saliency", "bp", "--json"]


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # never skipped: the venv need not be on PATH
    single = subprocess.run(
        [sys.executable, "-m", "wssbench", "run", *ARGS, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert single.returncode == 0, single.stderr
    multi = subprocess.run(
        [*torchrun, "--nproc-per-node", "2", "--master-port", "29531", "-m", "wssbench", "run", *ARGS,
         "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    one, two = json.loads(single.stdout), json.loads(multi.stdout)
    assert two["world_size"] == 2
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert two["miou"] == one["miou"]
    assert two["classifier"]["map"] == pytest.approx(one["classifier"]["map"])
    assert sorted(p.name for p in (tmp_path / "two" / "masks").iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / "masks").iterdir()
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
