"""`w2v serve` under load: N concurrent clients against one client at a time, on the same server.

    python bench/bench_serve.py                                   # random large model, 8 clients, 60 s each
    python bench/bench_serve.py --model runs/ft --engine auto     # a real model on the default engine
    python bench/bench_serve.py --batch-seconds 60                # batched forward passes on the CPU
    python bench/bench_serve.py --device cuda                     # batched on a GPU (the default there)
    python bench/bench_serve.py --preset tiny --seconds 5         # a quick check that it works

Starts `w2v serve` as a separate process on 127.0.0.1 (a free port), so its memory is the server's
alone, and waits for /health. Then two phases of `--seconds` each: one client sending requests back to
back, then `--clients` clients doing the same at once. Every request uploads one short real-speech
file (examples/mini/test/*.flac, a few seconds each, round robin) and asks for JSON. Prints per phase
the requests, failures (any answer but 200, or no answer), throughput (requests/s and audio
seconds per second), p50 / p95 latency, and the server's peak RSS sampled every 0.5 s; then the
throughput ratio (the issue's aim: at least 2x) and whether memory stayed flat across the loaded
phase (peak of its last quarter within 10% of its first quarter's). The CPU's flags come first.

Batching needs a model that can be padded: layer-norm models (large; not base) on PyTorch
(`--engine torch`, the default here), and the server batches by default on CUDA only; on the CPU
compare `--batch-seconds 60` with the default (one input at a time). Without batching the ratio
measures the overlap of uploads and decoding with the model.
Run it on a quiet machine: other load moves the figures. Loopback only; everything is bounded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import soundfile as sf  # noqa: E402
from bench_transcribe import SPEECH, cpu_flags, random_checkpoint  # noqa: E402

ROUTE = "/v1/audio/transcriptions"
RSS_EVERY = 0.5  # seconds between memory samples


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "w2vcli", "serve", model, "--port", str(port), "--engine", args.engine]
    cmd += ["--max-queue", str(max(32, 2 * args.clients)), "--device", args.device]
    cmd += (["--int8"] if args.int8 else []) + (
        ["--batch-seconds", str(args.batch_seconds)] if args.batch_seconds is not None else []
    )
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"w2v serve exited ({server.returncode}): {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    sys.exit(f"w2v serve was not ready within {args.startup_timeout:g} s")


def phase(url: str, files: list[tuple[str, bytes, float]], clients: int, seconds: float, pid: int) -> dict:
    """`clients` threads posting files back to back for `seconds`; latencies, failures, RSS samples."""
    latencies: list[float] = []
    failures: list[str] = []
    audio = [0.0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            i = k
            while time.monotonic() < deadline:
                name, data, dur = files[i % len(files)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = http.post(ROUTE, files={"file": (name, data)}, data={"model": "w2v"})
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                        audio[0] += dur
                    else:
                        failures.append(why)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 120:
        samples.append((time.monotonic() - start, rss_mb(pid)))
        time.sleep(RSS_EVERY)
    for t in threads:
        t.join(5)
    wall = time.monotonic() - start
    return dict(latencies=latencies, failures=failures, audio=audio[0], wall=wall, rss=samples)


def report(name: str, r: dict) -> float:
    lat = sorted(r["latencies"])
    n = len(lat)
    p50 = statistics.median(lat) if lat else float("nan")
    p95 = lat[min(n - 1, int(0.95 * n))] if lat else float("nan")
    rps = n / r["wall"]
    peak = max((m for _, m in r["rss"]), default=float("nan"))
    print(
        f"{name:>10}: {n} requests, {len(r['failures'])} failed, {rps:.2f} req/s, "
        f"{r['audio'] / r['wall']:.1f} audio s/s, latency p50 {p50 * 1000:.0f} ms p95 {p95 * 1000:.0f} ms, "
        f"peak RSS {peak:.0f} MB",
        flush=True,
    )
    for why in r["failures"][:3]:
        print(f"            failure: {why}")
    return rps


def flat(samples: list[tuple[float, float]]) -> str:
    if len(samples) < 8:
        return "too few samples"
    q = len(samples) // 4
    first, last = max(m for _, m in samples[:q]), max(m for _, m in samples[-q:])
    verdict = "flat" if last <= 1.1 * first else "GROWING"
    return f"{verdict} (first quarter peak {first:.0f} MB, last quarter peak {last:.0f} MB)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="what `w2v serve` loads (default: a random --preset checkpoint)")
    p.add_argument("--preset", default="large", choices=["tiny", "base", "large"])
    p.add_argument("--engine", default="torch", choices=["auto", "onnx", "torch"])
    p.add_argument("--int8", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--batch-seconds", type=float, help="the server's --batch-seconds (default: its own, 0 on the CPU)"
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /health")
    args = p.parse_args()

    print(f"cpu: {cpu_flags()}", flush=True)
    files = []
    for f in sorted(SPEECH.glob("*.flac")):
        info = sf.info(str(f))
        files.append((f.name, f.read_bytes(), info.frames / info.samplerate))
    mean = statistics.mean(d for _, _, d in files)
    print(
        f"{len(files)} files of {mean:.1f} s on average; {args.clients} clients; {args.seconds:g} s per phase"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(random_checkpoint(args.preset, Path(tmp) / args.preset))
        what = args.model or f"random {args.preset}"
        server, url = start_server(model, args)
        flags = f"--engine {args.engine} --device {args.device}" + (" --int8" if args.int8 else "")
        if args.batch_seconds is not None:
            flags += f" --batch-seconds {args.batch_seconds:g}"
        print(f"server: {what}, {flags}, at {url}", flush=True)
        try:
            phase(url, files, 1, min(3.0, args.seconds), server.pid)  # warm-up, not reported
            one = phase(url, files, 1, args.seconds, server.pid)
            many = phase(url, files, args.clients, args.seconds, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(150)
            except subprocess.TimeoutExpired:
                server.kill()
    r1 = report("1 client", one)
    rn = report(f"{args.clients} clients", many)
    failed = len(one["failures"]) + len(many["failures"])
    print(
        f"throughput ratio {args.clients} clients / 1 client: {rn / r1:.2f}x (aim: >= 2x); failures: {failed}"
    )
    print(f"memory across the {args.clients}-client phase: {flat(many['rss'])}")


if __name__ == "__main__":
    main()
