"""A worker for tests/test_scale_out.py, started by torchrun: tiny pretraining of CORPUS into RUN.

    python -m torch.distributed.run ... tests/ddp_entry.py CORPUS RUN UPDATES [PIDFILE]

Each worker writes "restart rank pid" to PIDFILE (when given) so a test can kill one of them."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.train_helpers import small_model, small_train  # noqa: E402
from w2vcli.pipelines.pretrain import pretrain  # noqa: E402

if __name__ == "__main__":
    corpus, run, updates = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:
        with open(sys.argv[4], "a") as f:
            f.write(
                f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')} {os.environ['RANK']} {os.getpid()}\n"
            )
    torch.set_num_threads(1)
    pretrain(corpus, run, small_train(max_updates=updates, save_every=1, keep=20), small_model())
