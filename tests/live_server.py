"""A real HTTP server for tests: uvicorn serving an app on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class LiveServer:
    """`LiveServer(app)` is serving at `.url` (no trailing slash) once constructed; `stop()` ends it."""

    def __init__(self, app, start_timeout: float = 30):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + start_timeout
        while not self._server.started and time.time() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError("the test server did not start")
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
