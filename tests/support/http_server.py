"""A real HTTP server on 127.0.0.1 for download tests: serves bytes, honours Range, can cut a transfer."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RangeRequestHandler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files` (URL path -> bytes), honouring `Range: bytes=N-` like a CDN does."""

    def do_GET(self) -> None:
        self.server.range_headers.append(self.headers.get("Range"))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and self.server.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.cut_after  # simulate a dropped connection after this many bytes
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving() -> Iterator[http.server.HTTPServer]:
    """A real HTTP server on 127.0.0.1 in a thread; tests put bytes in `server.files[path]`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeRequestHandler)
    server.files = {}
    server.range_headers = []
    server.honour_range = True
    server.cut_after = None
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()
