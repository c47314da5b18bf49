"""One served model: the batcher, the app and a uvicorn server, with an explicit start and stop.

`run()` blocks in the main thread (what `w2v serve` does): uvicorn handles SIGINT/SIGTERM by closing
the listening socket, letting the requests in flight finish (up to GRACE_SECONDS), then running the
app's lifespan shutdown, which lets the batcher finish its queue and stops it. `start()` runs the
same server in a thread for tests and benchmarks, on a socket bound before it returns (port 0: any
free port), and `stop()` shuts it down the same graceful way.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from w2vcli.errors import UsageError
from w2vcli.serving.app import ServeLimits, create_app
from w2vcli.serving.batcher import Batcher

GRACE_SECONDS = 120  # SIGTERM: how long requests in flight may take to finish
STARTUP_SECONDS = 30  # start(): how long the server may take to listen


class Service:
    def __init__(
        self, batcher: Batcher, host: str = "127.0.0.1", port: int = 8080, limits: ServeLimits = ServeLimits(),
        api_key: str | None = None, log_level: str = "info",
    ):  # fmt: skip
        self.batcher = batcher
        self.host, self.port = host, port
        # Connections beyond this get uvicorn's own 503 before any app code runs: a flood of idle
        # connections cannot grow memory. Requests admitted to the model are bounded by max_queue.
        connections = 4 * batcher.limits.max_queue + 64
        self.config = uvicorn.Config(
            create_app(batcher, limits, api_key), host=host, port=port, log_level=log_level, lifespan="on",
            limit_concurrency=connections, timeout_graceful_shutdown=GRACE_SECONDS, timeout_keep_alive=5,
        )  # fmt: skip
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self, announce=None) -> int:
        """Serve until SIGINT/SIGTERM, or until the model fails to load; the exit code.
        `announce(message)` hears the address once the socket listens."""
        sock = self._bind()
        if announce is not None:
            announce(f"listening on {self.url}; Ctrl-C or SIGTERM stops it")
        threading.Thread(target=self._exit_if_load_fails, daemon=True).start()
        self.server.run(sockets=[sock])
        return 1 if self.batcher.load_error else 0

    def start(self) -> Service:
        """Serve in a background thread; returns once the socket listens (the model may still load)."""
        sock = self._bind()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"the server did not start on {self.url}")
        return self

    def _bind(self) -> socket.socket:
        """The listening socket, bound before the model loads, so a taken port fails at once."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise UsageError(
                f"cannot listen on {self.host}:{self.port} ({e.strerror or e}); choose another --port or --host"
            ) from None
        self.port = sock.getsockname()[1]
        return sock

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once the model is loaded."""
        return self.batcher.ready.wait(timeout)

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
        """What SIGTERM does: requests in flight finish, then the server and the batcher end."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def _exit_if_load_fails(self) -> None:
        self.batcher.settled.wait()
        if self.batcher.load_error:
            self.server.should_exit = True
