"""``kill -9`` of a run while it segments: its pool workers end, and the next run in the same
place removes the temporary folder it left."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc"),
]

RUN = textwrap.dedent("""
    import sys, time
    from dataclasses import dataclass
    from pathlib import Path
    import numpy as np
    import wssbench
    from wssbench.seed.config import RunConfig
    from wssbench.seed.run import run
    from wssbench.host.registry import build_registry
    from wssbench.classifier.training import TrainRecipe

    @dataclass(frozen=True)
    class SlowFusion:
        name = "slow"
        seconds: float = 0.0

        def __call__(self, image, labels, class_maps, saliency_maps):
            time.sleep(self.seconds)
            probs = np.zeros((len(labels) + 1, *image.shape[:2]), np.float32)  # (K+1, H, W)
            probs[0] = 1
            return probs

    class Plugin:
        @wssbench.hookimpl
        def register_fusion(self, register):
            register(SlowFusion)

    config = RunConfig(
        recipe=TrainRecipe(epochs=1, batch_size=8, crop=32), saliency=None, fusion="slow", refine=(),
        options=(("dataset", "preset", "tiny"), ("fusion", "seconds", sys.argv[2])), workers=2, batch_size=2,
    )
    run(config, build_registry([Plugin()]), Path(sys.argv[1]))
""")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_kill_9_ends_workers_and_next_run_cleans_up(tmp_path, wssbench_home, tiny_dataset):
    out = tmp_path / "out"
    env = {**os.environ, "WSSBENCH_HOME": str(wssbench_home)}
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(out), "0.5"], env=env)
    workers = []
    try:
        def masks_begun():
            return [d for d in tmp_path.glob(".out.*.tmp") if any((d / "masks").glob("*.png"))]

        wait_for(masks_begun, 180, "the run to write its first masks")
        workers = wait_for(lambda: children(proc.pid), 10, "the pool workers")
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not any(running(w) for w in workers), 10, f"workers {workers} to end after their parent was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for worker in workers:  # when the test fails, leave no orphans of its own behind
            if running(worker):
                os.kill(worker, signal.SIGKILL)
    assert masks_begun()  # the temporary folder with partial masks is left ...
    again = subprocess.run([sys.executable, "-c", RUN, str(out), "0"], env=env, timeout=300)
    assert again.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # ... and the next run removes it
    assert (out / "result.json").is_file()
