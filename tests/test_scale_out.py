"""Training across machines, simulated on loopback: two torchrun "nodes" meeting through c10d
rendezvous train as one process over the same global batch, and a worker killed with -9 under
`--max-restarts` is restarted with its peers, which resume from the last checkpoint and end where an
uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_train import _free_port, weights
from tests.train_helpers import make_corpus, small_model, small_train
from w2vcli.pipelines.pretrain import pretrain
from w2vcli.training.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "tests" / "ddp_entry.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _max_diff(a: Path, b: Path) -> float:
    x, y = weights(a), weights(b)
    return max(float((x[k] - y[k]).abs().max()) for k in x)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.slow
def test_two_nodes_on_loopback_equal_one_process_over_the_global_batch(corpus, tmp_path):
    torch.set_num_threads(1)
    one = pretrain(corpus, tmp_path / "one", small_train(max_updates=2, accumulate=2), small_model())
    port = _free_port()
    nodes = [
        subprocess.Popen(
            torchrun(
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "w2v-test",
                ENTRY,
                str(corpus),
                str(tmp_path / "two"),
                "2",
            ),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [n.communicate(timeout=240)[0] for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    assert [n.returncode for n in nodes] == [0, 0], outputs
    run = RunDir(tmp_path / "two")
    assert run.updates()[-1][0] == 2
    assert _max_diff(one.checkpoint, run.latest()) < 1e-6


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("W2V_TEST_ELASTIC") != "1",
    reason="flaky here: passed 3 of 4 runs, one hung after the restart (gloo's reconnection); "
    "set W2V_TEST_ELASTIC=1 to run it",
)
def test_a_worker_killed_with_minus_9_is_restarted_and_the_run_ends_as_an_uninterrupted_one(corpus, tmp_path):
    updates = 6

    def launch(out: Path, pids: Path) -> subprocess.Popen:
        return subprocess.Popen(
            torchrun(
                "--nnodes",
                "1",
                "--nproc-per-node",
                "2",
                "--max-restarts",
                "3",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{_free_port()}",
                ENTRY,
                str(corpus),
                str(out),
                str(updates),
                str(pids),
            ),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    whole = launch(tmp_path / "whole", tmp_path / "whole.pids")
    out, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, out

    job = launch(tmp_path / "killed", tmp_path / "killed.pids")
    run = RunDir(tmp_path / "killed")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run.updates() and run.updates()[-1][0] >= 2):
        time.sleep(0.05)
    assert run.updates() and run.updates()[-1][0] < updates, "the run ended before a worker could be killed"
    victim = next(
        int(pid)
        for restart, rank, pid in (ln.split() for ln in (tmp_path / "killed.pids").read_text().splitlines())
        if (restart, rank) == ("0", "1")
    )
    os.kill(victim, signal.SIGKILL)
    out, _ = job.communicate(timeout=300)
    assert job.returncode == 0, out
    restarts = {ln.split()[0] for ln in (tmp_path / "killed.pids").read_text().splitlines()}
    # restarted (gloo's mesh may refuse the first reconnection on a loaded machine: a further restart)
    assert {"0", "1"} <= restarts, out
    assert run.updates()[-1][0] == updates
    whole_run = RunDir(tmp_path / "whole")
    assert _max_diff(whole_run.latest(), run.latest()) < 1e-5
