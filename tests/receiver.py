"""A webhook receiver for tests: a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """A webhook receiver: a real HTTP server on 127.0.0.1 that keeps every request and answers
    with `answers` in turn, then 200."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[tuple[dict[str, str], str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def of_type(self, kind: str) -> list[tuple[dict[str, str], str]]:
        """The requests carrying notifications of `kind`: headers and raw body."""
        return [(h, b) for h, b in self.requests if json.loads(b)["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
