"""The pages server of `forecastguard serve`: history at `/`, reports at `/checks/<id>`,
a product's history at `/products/<id>`.

On 127.0.0.1 (the default) the pages are open to this machine; bound to any other
address every request needs the same credentials as `/model/health` (a bearer
`HEALTH_API_TOKEN` or an allowed Google ID token, `forecastguard.auth`). Every page is
sent with a Content-Security-Policy that forbids loading anything, so a page that tried
to fetch a script, font or image would show it as a console error (the browser test
checks there is none).
"""

from __future__ import annotations

import ipaddress
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import sqlalchemy as sa

from forecastguard.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import flask

    from forecastguard.auth import Authenticator
    from forecastguard.storage import ArtifactStore

log = get_logger(__name__)

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_CHECK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_report(uri: str) -> bytes:
    """The report at a `file://` or `gs://` URI (`ArtifactNotFound` when missing)."""
    from forecastguard.storage import ArtifactNotFound, open_store

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactNotFound(f"no report at {uri}") from exc
    if parsed.scheme == "gs":
        bucket_store = open_store(f"gs://{parsed.netloc}")
        return bucket_store.read_bytes(parsed.path.lstrip("/"))
    raise ArtifactNotFound(f"unsupported report address {uri!r}")


def _page(body: str, status: int) -> flask.Response:
    import flask

    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>forecastguard</title>'
        f'</head><body style="font-family: sans-serif"><p id="error">{body}</p>'
        '<p><a href="/">history of the checks</a></p></body></html>'
    )
    return flask.Response(html, status, mimetype="text/html")


def create_app(
    engine: sa.Engine,
    *,
    store: ArtifactStore | None = None,
    authenticator: Authenticator | None = None,
) -> flask.Flask:
    """The pages app. `store` is where checks wrote their reports (ARTIFACT_URI); a
    check's own recorded `report_uri` is tried first. With `authenticator`, every
    request must pass it (401 otherwise)."""
    import flask
    from markupsafe import escape

    from forecastguard.db.engine import DatabaseUnavailable, database_error
    from forecastguard.report.check_page import report_key
    from forecastguard.report.history import (
        DEFAULT_CHECKS,
        MAX_CHECKS,
        ProductNotFound,
        check_summary,
        render_history,
        render_product,
    )
    from forecastguard.storage import ArtifactNotFound, StorageError

    app = flask.Flask("forecastguard.pages")

    @app.before_request
    def _authenticate() -> flask.Response | None:
        if authenticator is None:
            return None
        if authenticator.authenticate(flask.request.headers.get("Authorization")) is None:
            response = _page("unauthorized: send Authorization: Bearer &lt;token&gt;", 401)
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    @app.after_request
    def _headers(response: flask.Response) -> flask.Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(sa.exc.SQLAlchemyError)
    def _database(exc: Exception) -> flask.Response:
        error = database_error(exc) or exc
        log.error("pages: database error", extra={"error": str(error)})
        return _page("the database is unavailable or not migrated (forecastguard db upgrade)", 503)

    @app.errorhandler(DatabaseUnavailable)
    def _unavailable(exc: Exception) -> flask.Response:
        log.error("pages: database unavailable", extra={"error": str(exc)})
        return _page("the database is unavailable", 503)

    @app.errorhandler(404)
    def _not_found(exc: Exception) -> flask.Response:
        return _page("not found", 404)

    @app.errorhandler(405)
    def _method(exc: Exception) -> flask.Response:
        return _page("method not allowed", 405)

    @app.get("/")
    def history() -> Any:
        raw = flask.request.args.get("n", str(DEFAULT_CHECKS))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_CHECKS:
            return _page(f"n must be a whole number from 1 to {MAX_CHECKS}", 400)
        return flask.Response(render_history(engine, int(raw)), mimetype="text/html")

    @app.get("/checks/<check_id>")
    def check(check_id: str) -> Any:
        if not _CHECK_ID.match(check_id):
            return _page("not a health check id", 404)
        summary = check_summary(engine, check_id)
        if summary is None:
            return _page(f"no health check {escape(check_id)}", 404)
        # Only a check's own report: a recorded address is data, not a path to anything.
        key = report_key(check_id)
        readers = []
        if store is not None:  # ARTIFACT_URI, with its client
            readers.append(lambda: store.read_bytes(key))
        recorded = summary.get("report_uri")
        if isinstance(recorded, str) and recorded.endswith(key):
            readers.append(lambda: read_report(recorded))
        for read in readers:
            try:
                html = read().decode("utf-8")
            except (ArtifactNotFound, StorageError, UnicodeDecodeError):
                continue
            nav = '<body>\n<nav><a href="/">← history of the checks</a></nav>'
            return flask.Response(html.replace("<body>", nav, 1), mimetype="text/html")
        return _page(
            f"check {escape(check_id)} has no stored report (ARTIFACT_URI was not set when it "
            "ran); `forecastguard health --html FILE` writes one for a new check",
            404,
        )

    @app.get("/products/<path:product_id>")
    def product(product_id: str) -> Any:
        if len(product_id) > 64:
            return _page("not a product id", 404)
        try:
            html = render_product(engine, product_id)
        except ProductNotFound:
            return _page(f"nothing is known of product {escape(product_id)}", 404)
        return flask.Response(html, mimetype="text/html")

    return app


class PagesServer:
    """The pages app served by werkzeug in a background thread (stopped by `stop`)."""

    def __init__(self, app: flask.Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import make_server

        self._server = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8083/."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> PagesServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> PagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
