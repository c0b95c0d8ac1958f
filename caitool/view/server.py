"""The viewer's HTTP server: the page (static files shipped in the package) and a small JSON API.

Standard library only (http.server), bound to 127.0.0.1. The page never receives HTML from the server:
every record goes out as JSON and the page puts its strings into the DOM as text, and a Content-Security-
Policy that allows only the page's own script is a second wall should a bug ever slip through.

API (all GET, JSON):
  /api/files                                  the opened files: path, kind, rows
  /api/rows?file=F&offset=&limit=&principle=&flag=&kind=&pmin=&pmax=&errors=1&q=&sort=
                                              one page of the filtered, sorted list, counts, p histogram
  /api/facets?file=F                          principles, flags, kinds with counts; the p histogram
  /api/row?file=F&n=N                         one whole record
  /api/report?file=F                          a report file (elo, eval-labeler, stats), whole
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from caitool.view.data import FOREGROUND, Dataset, Query

STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'"
MAX_PAGE = 1000


def _finite(obj: Any) -> Any:
    """NaN and infinities as strings: the browser's JSON.parse rejects them as numbers."""
    if (isinstance(obj, float) and obj != obj) or obj in (float("inf"), float("-inf")):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def json_bytes(obj: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str).encode()
    except ValueError:
        return json.dumps(_finite(obj), ensure_ascii=False, default=str).encode()


def static_file(name: str) -> bytes:
    return resources.files("caitool.view").joinpath("static", name).read_bytes()


def parse_query(params: dict[str, list[str]]) -> Query:
    def one(name: str) -> str:
        return params.get(name, [""])[0].strip()

    def number(name: str) -> float | None:
        value = one(name)
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None

    def integer(name: str, default: int) -> int:
        value = one(name)
        try:
            return int(value) if value else default
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an integer") from None

    sort = one("sort") or "order"
    if sort not in ("order", "id", "p", "-p"):
        raise ValueError(f"sort={sort!r}: choose order, id, p or -p")
    return Query(
        offset=max(0, integer("offset", 0)),
        limit=min(MAX_PAGE, max(1, integer("limit", 100))),
        principle=one("principle"),
        flag=one("flag"),
        kind=one("kind"),
        p_min=number("pmin"),
        p_max=number("pmax"),
        errors_only=one("errors") in ("1", "true", "on"),
        text=one("q"),
        sort=sort,
    )


class ViewServer:
    """Serves `datasets` on 127.0.0.1:`port` (0: any free port) from a background thread."""

    def __init__(self, datasets: list[Dataset], port: int = 0) -> None:
        self.datasets = datasets
        handler = type("Handler", (_Handler,), {"view": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> ViewServer:
        for d in self.datasets:
            d.start_summaries()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="caitool-view")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        for d in self.datasets:
            d.start_summaries()
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _dataset(self, params: dict[str, list[str]]) -> Dataset:
        try:
            return self.datasets[int(params.get("file", ["0"])[0])]
        except (ValueError, IndexError):
            raise LookupError("no such file") from None

    def wait_for_index(self, path: str, params: dict[str, list[str]]) -> None:
        """Block until every row is summarized when the answer needs them all (facets, filters, sorts)."""
        if path == "/api/facets" or (path == "/api/rows" and not parse_query(params).is_plain()):
            self._dataset(params).summarized.wait()

    def api(self, path: str, params: dict[str, list[str]]) -> Any:
        if path == "/api/files":
            return [d.info() for d in self.datasets]
        d = self._dataset(params)
        if path == "/api/rows":
            return d.query(parse_query(params))
        if path == "/api/facets":
            return d.facets()
        if path == "/api/report":
            return {"kind": d.kind, "report": d.report}
        if path == "/api/row":
            try:
                return d.row(int(params.get("n", [""])[0]))
            except (ValueError, IndexError):
                raise LookupError("no such row") from None
        raise LookupError(f"{path}: not found")


class _Handler(BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "caitool-view"

    def log_message(self, format: str, *args: Any) -> None:  # requests are not news: keep stderr quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        body = json_bytes(obj)
        self._send(status, body, "application/json; charset=utf-8")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        name = "index.html" if url.path == "/" else url.path.removeprefix("/static/")
        try:
            if url.path.startswith("/api/"):
                params = parse_qs(url.query)
                self.view.wait_for_index(url.path, params)  # outside FOREGROUND: the indexer must run
                with FOREGROUND:
                    body = self.view.api(url.path, params)
                self._json(HTTPStatus.OK, body)
            elif name in STATIC_TYPES:
                self._send(HTTPStatus.OK, static_file(name), STATIC_TYPES[name])
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"{url.path}: not found"})
        except LookupError as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc.args[0] if exc.args else exc)})
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass
