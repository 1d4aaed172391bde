"""A small shop for the browser tests: pages carrying the page snippet, served locally.

Its own origin (another port than the collector's), so the beacons are cross-origin and
the collector's CORS allow-list is exercised for real.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "web" / "dist" / "expmon-snippet.js"
PAGE = (Path(__file__).parent / "shop" / "page.html").read_text()

# path -> (title, text); every page carries the snippet except /done (where the test
# reads what the pages sent, from the same origin's localStorage)
PAGES = {
    "/": ("Home", "Welcome to the test shop."),
    "/product/42": ("Trail shoe", "A light trail running shoe."),
    "/cart": ("Your cart", "One item in your cart."),
}


# The two lines a shop pastes (README "Page snippet"); onSend is this test's capture.
SNIPPET_HEAD = """<script>window.expmonConfig = {{endpoint: "{collector}", region: "eu-west",
  appVersion: "test-1", onSend: function (e) {{ var k = "expmon.test.sent";
    var all = JSON.parse(localStorage.getItem(k) || "[]"); all.push(e);
    localStorage.setItem(k, JSON.stringify(all)); }}}};</script>
<script src="/expmon-snippet.js" async></script>"""
# The real Faro web SDK instead (web/test/faro-page.js), pointed at the collector
FARO_HEAD = """<script>window.faroTestConfig = {{url: "{collector}/collect"}};</script>
<script src="/faro-test.js"></script>"""


class Shop:
    """`faro_bundle`: serve the Faro SDK's test bundle instead of the snippet."""

    def __init__(self, collector_url: str, faro_bundle: Path | None = None) -> None:
        self.collector_url = collector_url
        self.faro_bundle = faro_bundle
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/expmon-snippet.js":
                    self._send(200, "text/javascript", SNIPPET.read_bytes())
                elif path == "/faro-test.js" and shop.faro_bundle is not None:
                    self._send(200, "text/javascript", shop.faro_bundle.read_bytes())
                elif path in PAGES:
                    title, text = PAGES[path]
                    head = (FARO_HEAD if shop.faro_bundle else SNIPPET_HEAD).format(
                        collector=shop.collector_url
                    )
                    html = PAGE.format(title=title, text=text, head=head)
                    self._send(200, "text/html; charset=utf-8", html.encode())
                elif path == "/done":
                    self._send(200, "text/html", b"<!doctype html><title>done</title>done")
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")  # no bfcache surprises
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Shop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
