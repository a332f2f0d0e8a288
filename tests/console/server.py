"""The console served from this test process (as ``saga-actors console`` serves it), on a
free port, in a thread."""

from __future__ import annotations

import threading

import uvicorn

from tests.cluster import free_port
from tests.conftest import poll


class ConsoleServer:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                     log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ConsoleServer:
        self._thread.start()
        poll(lambda: self._server.started or not self._thread.is_alive(),
             what=f"the console to listen on {self.url}")
        assert self._server.started, f"the console did not start on {self.url}"
        return self

    def __exit__(self, *_) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
