"""A job step started by Slurm's `srun`, without torchrun: rank, world size, local rank and the
rendezvous come from Slurm's variables (faked here), and two such processes train as DDP does."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.test_train import _free_port, weights
from tests.train_helpers import make_corpus, small_model, small_train
from w2vcli.errors import UsageError
from w2vcli.pipelines.pretrain import pretrain
from w2vcli.training.rundir import RunDir
from w2vcli.training.runtime import Dist, first_host, from_env

SLURM = {
    "SLURM_PROCID": "5",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_NTASKS": "8",
    "SLURM_LOCALID": "1",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_JOB_ID": "123456",
}


@pytest.mark.parametrize(
    "nodelist, host",
    [
        ("node01", "node01"),
        ("node01,node02", "node01"),
        ("gpu[07-09,12],cpu3", "gpu07"),
        ("gpu[007-009]", "gpu007"),
        ("a-[3,1-2]", "a-3"),
        ("n[1-2]-ib,m4", "n1-ib"),
        ("r[2-3]n[10-12]", "r2n10"),
    ],
)
def test_first_host_of_a_slurm_host_list(nodelist, host):
    assert first_host(nodelist) == host


def test_a_slurm_step_gives_rank_world_and_master():
    assert from_env(SLURM) == Dist(5, 8, 1, "gpu07:23456")  # 20000 + job id % 20000
    assert from_env(SLURM | {"MASTER_PORT": "29400"}).master == "gpu07:29400"
    assert from_env(SLURM | {"MASTER_ADDR": "head", "MASTER_PORT": "1"}).master == "head:1"
    no_step = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}
    assert from_env(no_step).master == "gpu07:23456"  # the job's node list


def test_torchrun_wins_and_a_batch_shell_is_one_process():
    torchrun = SLURM | {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}
    assert from_env(torchrun) == Dist(2, 4, 0)
    batch_shell = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_NUM_TASKS"}  # sbatch's script itself
    assert from_env(batch_shell) == Dist()
    assert from_env(SLURM | {"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}) == Dist()
    assert from_env({}) == Dist()


def test_a_malformed_environment_is_one_line():
    with pytest.raises(UsageError, match="distributed environment is malformed"):
        from_env(SLURM | {"SLURM_PROCID": "five"})
    with pytest.raises(UsageError, match="without SLURM_STEP_NODELIST or MASTER_ADDR"):
        from_env({k: v for k, v in SLURM.items() if not k.endswith("NODELIST")})


def _slurm_rank(rank: int, port: int, corpus, out) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        os.environ.pop(k, None)
    os.environ.update(
        SLURM_PROCID=str(rank),
        SLURM_STEP_NUM_TASKS="2",
        SLURM_LOCALID=str(rank),
        SLURM_STEP_NODELIST="127.0.0.1",
        SLURM_JOB_ID="1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    pretrain(corpus, out, small_train(max_updates=2), small_model())


@pytest.mark.slow
def test_two_srun_tasks_train_as_ddp_does(tmp_path):
    """Two processes with only Slurm's variables: the same weights as one process over the global batch."""
    corpus = make_corpus(tmp_path / "corpus")
    torch.set_num_threads(1)
    one = pretrain(corpus, tmp_path / "one", small_train(max_updates=2, accumulate=2), small_model())
    mp.start_processes(
        _slurm_rank, args=(_free_port(), corpus, tmp_path / "slurm"), nprocs=2, start_method="spawn"
    )
    two = RunDir(tmp_path / "slurm").latest()
    a, b = weights(one.checkpoint), weights(two)
    assert RunDir(tmp_path / "slurm").updates()[-1][0] == 2
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
