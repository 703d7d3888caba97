"""A fault-injecting HTTP proxy on loopback, in front of a real OpenAI-compatible server.

Each request takes the next fault from a script ("429", "500", "400", "malformed", "slow",
"hold", "pass"); when the script runs out, requests take `default` (pass through). "hold" keeps
the request waiting, unanswered, until the test calls `release()` (then drops it): a process held
there is at a known point, for a kill test. Bounded: it serves only loopback, and the test stops it.
"""
from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from collections import deque


class FaultProxy:
    def __init__(self, upstream: str, script: list[str], slow_seconds: float = 5.0, default: str = "pass"):
        self.upstream = upstream.rstrip("/")
        self.script = deque(script)
        self.default = default
        self.seen: list[str] = []
        self.held = threading.Event()  # set once a request is being held
        self._release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy.script.popleft() if proxy.script else proxy.default
                proxy.seen.append(fault)
                if fault == "429":
                    return self._reply(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0"})
                if fault == "500":
                    return self._reply(500, b'{"error": {"message": "boom"}}')
                if fault == "400":
                    return self._reply(400, b'{"error": {"message": "prompt too long for this judge", "type": '
                                            b'"invalid_request_error"}}')
                if fault == "hold":
                    proxy.held.set()
                    proxy._release.wait(timeout=300)
                    return  # released: close without a reply (its client is gone by then)
                if fault == "malformed":
                    return self._reply(200, b'{"id": "x", "choices": [ this is not json')
                if fault == "slow":
                    time.sleep(slow_seconds)
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as reply:
                        return self._reply(reply.status, reply.read())
                except (OSError, ConnectionError):
                    return  # the client has gone (it timed out): nothing to send

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def release(self) -> None:
        """Let every held request go (each is dropped without a reply)."""
        self._release.set()

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
