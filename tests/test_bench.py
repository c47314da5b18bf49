"""bench/bench_transcribe.py runs each benchmark in a seconds-long mode and prints its parameters and ratios.

Smoke tests only: the figures themselves are never asserted (benchmarks are not timing tests).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_transcribe.py"
RATIO = re.compile(r"ratio .*: .*\d+\.\d\dx")


def bench(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"$ bench_transcribe.py {' '.join(args)}" in proc.stdout  # the command line, to re-run it
    assert "preset=tiny threads=1" in proc.stdout  # the parameters
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("int8", [False, True])
def test_speed_prints_ratio_and_identity_checks(int8):
    out = bench(
        "speed", "--preset", "tiny", "--seconds", "2", "--repeats", "1", *(["--int8"] if int8 else [])
    )
    assert RATIO.search(out)
    if int8:
        assert re.search(r"int8 vs fp32 w2vcli: CER \d", out)
    else:  # same weights, same input: the same argmax on every frame and the same text
        assert "frame argmax agreement with transformers: 1.0000" in out
        assert "identical text: True" in out


@pytest.mark.slow
def test_engines_compares_each_engine_with_transformers():
    out = bench("engines", "--preset", "tiny", "--seconds", "2", "--repeats", "1", "--warmup", "0")
    assert re.search(r"cpu: '.*' flags=", out)  # the CPU kind the figures belong to
    for name in ("torch fp32", "onnx fp32", "torch int8", "onnx int8"):
        assert re.search(rf"{name}: wall +\d+\.\d+ s .* \d+\.\d\dx wall", out), out
    assert re.search(r"onnx fp32: .*text vs transformers: identical", out)


@pytest.mark.slow
def test_files_memory_startup_and_profile_run():
    out = bench("files", "--preset", "tiny", "--files", "3", "--repeats", "1", "--batch-seconds", "0", "8")
    assert len(RATIO.findall(out)) == 2  # each batch setting against the one long file
    out = bench("memory", "--preset", "tiny", "--minutes", "0.05", "0.1", "--repeats", "1")
    assert re.search(r"0\.1 min: peak RSS +\d+ MB", out) and RATIO.search(out)
    out = bench("startup", "--preset", "tiny", "--repeats", "1")
    assert len(RATIO.findall(out)) == 2
    out = bench("profile", "--preset", "tiny", "--seconds", "1", "--rows", "5")
    assert "--- w2vcli" in out and "--- transformers" in out and "Self CPU time total" in out
