"""Training across machines, simulated on loopback: two torchrun "nodes" meeting through c10d
rendezvous train as one process over the same global batch, and a worker killed with -9 under
`--max-restarts` is restarted with its peers, which resume from the last checkpoint and end where an
uninterrupted run ends."""

import contextlib
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
# W2V_DIST_TIMEOUT: a restart whose gloo mesh never connects fails in a minute (and torchrun restarts
# again) instead of hanging for the default half hour.
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "W2V_DIST_TIMEOUT": "60"}


def _popen(cmd: list[str]) -> subprocess.Popen:
    """torchrun in its own session, so that `_kill` takes its workers with it."""
    return subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Its output once it ends (at most `timeout` s); torchrun's whole group is killed either way."""
    try:
        return proc.communicate(timeout=timeout)[0]
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
        _popen(
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
            )
        )
        for _ in range(2)
    ]
    try:
        outputs = [n.communicate(timeout=240)[0] for n in nodes]
    finally:
        for n in nodes:
            _kill(n)
    assert [n.returncode for n in nodes] == [0, 0], outputs
    run = RunDir(tmp_path / "two")
    assert run.updates()[-1][0] == 2
    assert _max_diff(one.checkpoint, run.latest()) < 1e-6


@pytest.mark.slow
def test_a_worker_killed_with_minus_9_is_restarted_and_the_run_ends_as_an_uninterrupted_one(corpus, tmp_path):
    """...and so does a whole job killed and requeued."""
    updates = 6

    def launch(out: Path, pids: Path) -> subprocess.Popen:
        return _popen(
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
            )
        )

    whole = launch(tmp_path / "whole", tmp_path / "whole.pids")
    out = _finish(whole)
    assert whole.returncode == 0, out

    job = launch(tmp_path / "killed", tmp_path / "killed.pids")
    try:
        run = RunDir(tmp_path / "killed")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (run.updates() and run.updates()[-1][0] >= 2):
            time.sleep(0.05)
        assert run.updates() and run.updates()[-1][0] < updates, (
            "the run ended before a worker could be killed"
        )
        victim = next(
            int(pid)
            for restart, rank, pid in (
                ln.split() for ln in (tmp_path / "killed.pids").read_text().splitlines()
            )
            if (restart, rank) == ("0", "1")
        )
        os.kill(victim, signal.SIGKILL)
        out, _ = job.communicate(timeout=300)
    finally:
        _kill(job)
    assert job.returncode == 0, out
    restarts = {ln.split()[0] for ln in (tmp_path / "killed.pids").read_text().splitlines()}
    assert {"0", "1"} <= restarts, out  # restarted
    assert run.updates()[-1][0] == updates
    whole_run = RunDir(tmp_path / "whole")
    assert _max_diff(whole_run.latest(), run.latest()) < 1e-5

    # The whole job killed (a scheduler's preemption) and started again with the same command: every
    # rank resumes from the last checkpoint and the run ends where the uninterrupted one did.
    job = launch(tmp_path / "requeued", tmp_path / "requeued.pids")
    requeued = RunDir(tmp_path / "requeued")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (requeued.updates() and requeued.updates()[-1][0] >= 2):
            time.sleep(0.05)
        assert requeued.updates()[-1][0] < updates, "the run ended before the job could be killed"
    finally:
        _kill(job)  # torchrun and both workers, -9
    job = launch(tmp_path / "requeued", tmp_path / "requeued.pids")
    out = _finish(job)
    assert job.returncode == 0, out
    assert requeued.updates()[-1][0] == updates
    assert _max_diff(whole_run.latest(), requeued.latest()) < 1e-5


def test_the_collective_timeout_comes_from_w2v_dist_timeout():
    from datetime import timedelta

    from w2vcli.errors import UsageError
    from w2vcli.training.runtime import collective_timeout

    assert collective_timeout({}) == timedelta(minutes=30)
    assert collective_timeout({"W2V_DIST_TIMEOUT": "90"}) == timedelta(seconds=90)
    for bad in ("soon", "0", "-5"):
        with pytest.raises(UsageError, match="W2V_DIST_TIMEOUT"):
            collective_timeout({"W2V_DIST_TIMEOUT": bad})
