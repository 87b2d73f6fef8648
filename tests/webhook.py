"""A webhook receiver for tests: keeps the alert notifications whose signature it checked."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port

SECRET = "webhook-secret-1"


class Webhook:
    """A webhook receiver that keeps the notifications whose signature it could check."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.bad_signatures = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if hmac.compare_digest(expected, self.headers.get("x-fleetscope-signature", "")):
                    hook.got.extend(json.loads(body)["notifications"])
                else:
                    hook.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self) -> list[str]:
        return [n["status"] for n in self.got if not n["repeat"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
