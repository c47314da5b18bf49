"""`w2v serve`: routes, formats and hostile requests in process (Starlette's TestClient); a real uvicorn
server on 127.0.0.1 for refusals before the body, disconnects mid-upload, overload and graceful stop;
and the official `openai` client against `w2v serve` itself, checked against `w2v transcribe`."""

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
pytest.importorskip("transformers")
os.environ["HF_HUB_OFFLINE"] = "1"  # never the network in tests

import httpx  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from test_transcribe import babble, make_hf_model, write  # noqa: E402

from w2vcli.checkpoints.resolve import load_model  # noqa: E402
from w2vcli.decoding.formats import render  # noqa: E402
from w2vcli.pipelines.transcribe import (  # noqa: E402
    TranscribeOptions,
    beam_options,
    expand,
    transcribe,
    transcribe_waveforms,
)
from w2vcli.serving.app import ServeLimits, create_app  # noqa: E402
from w2vcli.serving.batcher import Batcher, BatchLimits  # noqa: E402
from w2vcli.serving.server import Service  # noqa: E402

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_SECONDS = 3.0
MAX_UPLOAD = 256 * 1024
ROUTE = "/v1/audio/transcriptions"


def audio_bytes(wav, fmt="WAV", subtype="FLOAT", sr=16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    make_hf_model(d, "layer")
    return d


@pytest.fixture(scope="module")
def loaded(hf_dir):
    return load_model(str(hf_dir), device="cpu", engine="torch")


def make_batcher(loaded, **limits) -> Batcher:
    options = TranscribeOptions(batch_seconds=60.0)
    return Batcher(lambda: (loaded, options, beam_options(options)), BatchLimits(**limits), model_name="tiny")


@pytest.fixture(scope="module")
def client(loaded):
    batcher = make_batcher(loaded)
    app = create_app(batcher, ServeLimits(max_upload_bytes=MAX_UPLOAD, max_seconds=MAX_SECONDS), api_key=KEY)
    with TestClient(app, headers=AUTH) as c:
        assert batcher.ready.wait(30)
        yield c


def post(client, content: bytes, name="clip.wav", **fields):
    return client.post(ROUTE, files={"file": (name, content)}, data={"model": "whisper-1", **fields})


def test_every_response_format_is_what_transcribe_writes(client, loaded, tmp_path):
    path = write(tmp_path / "clip.wav", babble(1.6, 3))
    expected = next(transcribe(expand([path]), loaded, TranscribeOptions()))
    data = open(path, "rb").read()
    assert post(client, data).json() == {"text": expected.text}
    for fmt, kind in [("text", "txt"), ("srt", "srt"), ("vtt", "vtt")]:
        r = post(client, data, response_format=fmt)
        assert r.status_code == 200 and r.text == render(expected, kind)
    assert post(client, data, response_format="vtt").headers["content-type"].startswith("text/vtt")
    r = post(
        client, data, response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}
    )
    body = r.json()
    assert body["text"] == expected.text and body["duration"] == pytest.approx(1.6)
    assert body["words"] == expected.words and len(body["words"]) >= 1
    assert " ".join(s["text"] for s in body["segments"]) == expected.text
    default = post(client, data, response_format="verbose_json", language="en", prompt="ignored").json()
    assert "segments" in default and "words" not in default and default["language"] == "en"


def test_models_and_health(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert client.get("/v1/models/tiny").json()["object"] == "model"
    assert client.get("/health", headers={"Authorization": ""}).json()["status"] == "ok"  # no key needed


def _flac(seconds: float, sr: int = 16000) -> bytes:
    return audio_bytes(
        0.1 * np.sin(np.arange(int(seconds * sr)) / 5).astype(np.float32), "FLAC", "PCM_16", sr
    )


def _two_hours_of_silence() -> bytes:
    """7,200 s of FLAC in ~180 KB: refused from the header, before any decoding."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        minute = np.zeros(8000 * 60, np.int16)
        for _ in range(120):
            f.write(minute)
    return buf.getvalue()


HOSTILE = [
    ("empty file", dict(files={"file": ("a.wav", b"")}), 400, "empty_file"),
    ("text named .wav", dict(files={"file": ("a.wav", b"hello, not audio\n" * 20)}), 415, "unsupported_audio_format"),
    ("random bytes", dict(files={"file": ("a.wav", bytes(range(256)) * 8)}), 415, "unsupported_audio_format"),
    ("truncated FLAC", dict(files={"file": ("a.flac", _flac(2.0)[:3000])}), 400, "invalid_audio"),
    ("0-length audio", dict(files={"file": ("a.wav", audio_bytes(np.zeros(0, np.float32)))}), 400, "empty_audio"),
    ("too short", dict(files={"file": ("a.wav", audio_bytes(np.zeros(100, np.float32)))}), 400, "invalid_audio"),
    ("too long", dict(files={"file": ("a.flac", _flac(MAX_SECONDS + 1))}), 400, "audio_too_long"),
    ("2-hour audio", dict(files={"file": ("a.flac", _two_hours_of_silence())}), 400, "audio_too_long"),
    ("audio= not file=", dict(files={"audio": ("a.wav", b"RIFF")}), 400, "unknown_field"),
    ("no file", dict(files={"model": (None, "whisper-1")}), 400, "missing_file"),
    ("two files", dict(files=[("file", ("a.wav", b"1")), ("file", ("b.wav", b"2"))]), 400, None),
    ("response-format", dict(files={"file": ("a.wav", b"x"), "response-format": (None, "srt")}), 400, "unknown_field"),
    ("response_format=xml", dict(files={"file": ("a.wav", b"x"), "response_format": (None, "xml")}), 400,
     "invalid_response_format"),
    ("granularity=char", dict(files={"file": ("a.wav", b"x"), "timestamp_granularities[]": (None, "char")}), 400,
     "invalid_timestamp_granularities"),
    ("stream=true", dict(files={"file": ("a.wav", b"x"), "stream": (None, "true")}), 400, "stream_unsupported"),
    ("JSON body", dict(json={"file": "a.wav"}), 415, "unsupported_media_type"),
    ("multipart without boundary", dict(content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}), 400,
     "invalid_multipart"),
    ("upload over the limit", dict(files={"file": ("a.wav", b"\0" * (MAX_UPLOAD + 1))}), 413, "file_too_large"),
    ("missing API key", dict(files={"file": ("a.wav", b"x")}, headers={"Authorization": ""}), 401, "invalid_api_key"),
    ("wrong API key", dict(files={"file": ("a.wav", b"x")}, headers={"Authorization": "Bearer nope"}), 401,
     "invalid_api_key"),
    ("not Bearer", dict(files={"file": ("a.wav", b"x")}, headers={"Authorization": f"Basic {KEY}"}), 401,
     "invalid_api_key"),
]  # fmt: skip


@pytest.mark.parametrize("case, request_args, status, code", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_one_json_error_and_the_server_stays_up(
    client, case, request_args, status, code
):
    r = client.post(ROUTE, **request_args)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "code"} and "\n" not in error["message"]
    assert code is None or error["code"] == code
    assert "Traceback" not in r.text
    assert client.get("/health").status_code == 200


def test_uploads_stay_in_memory(loaded, monkeypatch):
    """A 1.5 MB upload (more than Starlette's 1 MB spool) is never written to a temporary file."""
    import tempfile

    def rollover(self):
        raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", rollover)
    limits = ServeLimits(max_upload_bytes=4 * 2**20, max_seconds=60)
    with TestClient(create_app(make_batcher(loaded), limits)) as c:
        data = audio_bytes(babble(24.0, 5))
        assert len(data) > 1.5e6
        assert post(c, data).status_code == 200


def test_other_routes_need_the_key_and_speak_json(client):
    assert client.get("/v1/models", headers={"Authorization": ""}).status_code == 401
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"
    assert client.get(ROUTE).status_code == 405


def test_health_is_503_while_loading_and_after_a_failed_load(loaded):
    gate = threading.Event()
    options = TranscribeOptions()
    slow = Batcher(lambda: (gate.wait(10), (loaded, options, beam_options(options)))[1], BatchLimits())
    with TestClient(create_app(slow)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading" and r.headers["Retry-After"]
        r = post(c, audio_bytes(babble(0.5, 1)))
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and r.headers["Retry-After"]
        gate.set()
        assert slow.ready.wait(10) and c.get("/health").status_code == 200

    def fail():
        raise OSError("no such checkpoint")

    broken = Batcher(fail, BatchLimits())
    with TestClient(create_app(broken)) as c:
        assert broken.settled.wait(10)
        r = c.get("/health")
        assert r.status_code == 503 and "no such checkpoint" in r.json()["error"]


def test_requests_arriving_together_share_a_batch_and_match_one_by_one(loaded):
    wavs = [babble(s, i) for i, s in enumerate([0.6, 1.9, 1.1, 0.8, 1.4, 2.5])]
    options = TranscribeOptions(batch_seconds=0.0)
    alone = [
        r.text for w in wavs for r in transcribe_waveforms([w], ["x"], loaded, options, beam_options(options))
    ]
    batcher = make_batcher(loaded, max_wait=0.5).start()
    try:
        assert batcher.ready.wait(30)
        futures = [batcher.submit(w, str(i)) for i, w in enumerate(wavs)]
        assert [f.result(timeout=30).text for f in futures] == alone
        assert batcher.jobs == len(wavs) and batcher.batches < len(wavs)
    finally:
        batcher.stop()
    assert not batcher.alive


# --- a real server on 127.0.0.1 -------------------------------------------------------------------


@pytest.fixture(params=[2])
def gated_service(loaded, request):
    """A uvicorn server whose worker holds each batch while `gate` is clear (it starts set); its
    queue holds request.param requests."""
    batcher = make_batcher(loaded, max_queue=request.param, max_wait=0.0)
    gate, entered = threading.Event(), threading.Event()
    gate.set()
    run = batcher._transcribe

    def held(group):
        entered.set()
        gate.wait(30)
        run(group)

    batcher._transcribe = held
    limits = ServeLimits(max_upload_bytes=MAX_UPLOAD, max_seconds=MAX_SECONDS)
    service = Service(batcher, "127.0.0.1", 0, limits, log_level="warning").start()
    assert service.wait_ready(30)
    yield service, gate, entered
    gate.set()
    service.stop(30)


def _raw(service, head: bytes, body: bytes = b"", linger_reset: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
    if linger_reset:  # close with RST instead of FIN, as a killed client does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.sendall(head + body)
    return sock


def _multipart_head(length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        f"{size}\r\n\r\n"
    ).encode()


def _reply(sock: socket.socket) -> bytes:
    """What the server answered, read until it closes or stops talking (bounded)."""
    reply, deadline = b"", time.monotonic() + 5
    while time.monotonic() < deadline and b"}}" not in reply:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        reply += data
    return reply


PART = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'


def test_a_1_gb_upload_is_refused_before_its_body(gated_service):
    service, _, _ = gated_service
    sock = _raw(service, _multipart_head(2**30), PART + b"\0" * 65536)
    reply = _reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413") and b"file_too_large" in reply


def test_a_chunked_upload_is_cut_off_at_the_limit(gated_service):
    service, _, _ = gated_service
    sock = _raw(service, _multipart_head(None), b"%x\r\n%s\r\n" % (len(PART), PART))
    sent, block = 0, b"\0" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(block), block)
    for _ in range(200):  # at most 12.5 MiB; the limit is 256 KiB
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(chunk)
        except OSError:  # the server answered and closed: read what it said
            break
        sent += len(block)
    reply = _reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413")
    assert sent < 200 * 65536  # it did not wait for the whole body


@pytest.mark.parametrize("gated_service", [64], indirect=True)
def test_clients_that_vanish_mid_upload_leave_the_server_answering(gated_service, capfd):
    service, _, _ = gated_service
    for i in range(200):  # the count; bounded, loopback only
        sock = _raw(service, _multipart_head(200_000), PART + b"\0" * 20_000, linger_reset=i % 2 == 0)
        sock.close()
    url, deadline = service.url, time.monotonic() + 10
    while (health := httpx.get(f"{url}/health", timeout=10).json())[
        "in_progress"
    ] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health == {"status": "ok", "model": "tiny", "in_progress": 0}  # every slot was given back
    r = httpx.post(f"{url}{ROUTE}", files={"file": ("a.wav", audio_bytes(babble(0.7, 2)))}, timeout=30)
    assert r.status_code == 200 and "text" in r.json()
    assert "Traceback" not in capfd.readouterr().err


def test_a_full_queue_is_503_with_retry_after_and_stop_finishes_requests_in_flight(gated_service):
    service, gate, entered = gated_service
    gate.clear()
    data = audio_bytes(babble(0.8, 4))
    answers: list = []

    def ask():
        answers.append(httpx.post(f"{service.url}{ROUTE}", files={"file": ("a.wav", data)}, timeout=60))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    assert entered.wait(10)
    r = httpx.post(f"{service.url}{ROUTE}", files={"file": ("a.wav", data)}, timeout=10)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "server_overloaded"
    stopper = threading.Thread(target=service.stop)  # what SIGTERM does
    stopper.start()
    time.sleep(0.3)
    gate.set()
    for t in [*threads, stopper]:
        t.join(60)
    assert [a.status_code for a in answers] == [200, 200]
    assert not service.batcher.alive
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/health", timeout=2)


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/model"], "model not found"),
        (["{hf}", "--lm", "missing.arpa"], "--lm missing.arpa: no such file"),
        (["{hf}", "--port", "{taken}"], "cannot listen on 127.0.0.1:"),
    ],
)
def test_serve_usage_errors_are_one_line_before_listening(hf_dir, args, message):
    from typer.testing import CliRunner

    from w2vcli.cli import app
    from w2vcli.errors import W2VError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fill = {"hf": str(hf_dir), "taken": str(taken.getsockname()[1])}
        r = CliRunner().invoke(app, ["serve", *(a.format(**fill) for a in args)])
    assert isinstance(r.exception, W2VError) and message in str(r.exception)


# --- the official client against `w2v serve` ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_client_gets_what_w2v_transcribe_gives(hf_dir, tmp_path):
    openai = pytest.importorskip("openai")
    clips = [write(tmp_path / f"c{i}.wav", babble(s, 10 + i)) for i, s in enumerate([1.2, 2.3])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "W2V_API_KEY": KEY}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "w2vcli", "serve", str(hf_dir), "--port", str(port), "--engine", "torch"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = tmp_path / "out"
    reference = subprocess.run(
        [sys.executable, "-m", "w2vcli", "transcribe", *clips, "-m", str(hf_dir), "--engine", "torch",
         "--output-dir", str(out), "-f", "txt", "-f", "srt", "-f", "vtt", "-f", "json", "--timestamps", "word"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert reference.returncode == 0, reference.stderr
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=30)
        assert [m.id for m in client.models.list()] == [str(hf_dir)]
        for clip in clips:
            files = {p.suffix: p.read_text() for p in out.rglob(os.path.basename(clip)[:-4] + ".*")}
            words = json.loads(files[".json"])["words"]

            def ask(fmt, clip=clip, **extra):
                with open(clip, "rb") as f:
                    return client.audio.transcriptions.create(
                        model="whisper-1", file=f, response_format=fmt, **extra
                    )

            assert ask("json").text + "\n" == files[".txt"]
            assert ask("text") == files[".txt"]
            assert ask("srt") == files[".srt"]
            assert ask("vtt") == files[".vtt"]
            verbose = ask("verbose_json", timestamp_granularities=["word", "segment"])
            assert verbose.text + "\n" == files[".txt"] and verbose.segments
            assert [(w.word, w.start, w.end) for w in verbose.words] == [
                (w["word"], w["start"], w["end"]) for w in words
            ]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0
            ).models.list()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    log = server.stdout.read()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in log, (
        log
    )  # uvicorn re-raises the signal it caught
