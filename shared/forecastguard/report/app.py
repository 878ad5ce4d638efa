"""The pages server of `forecastguard serve`: history at `/`, reports at `/checks/<id>`,
a product's history at `/products/<id>`.

On 127.0.0.1 (the default) the pages are open to this machine; bound to any other
address every request needs the same credentials as `/model/health` (a bearer
`HEALTH_API_TOKEN` or an allowed Google ID token, `forecastguard.auth`). Every page is
sent with a Content-Security-Policy that forbids loading anything, so a page that tried
to fetch a script, font or image would show it as a console error (the browser test
checks there is none).

A request whose `Host` header names no allowed host is refused (400), so a page of an
attacker's site cannot read these pages by pointing its own name at 127.0.0.1 (DNS
rebinding). `PagesServer` serves with waitress, a production WSGI server: idle and
half-open connections are closed after a timeout, and connections are capped.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
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
_COUNT = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit takes "²" and "١"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def allowed_hosts_for(host: str, extra: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """The Host names the pages answer when bound to `host`: the loopback names, the
    bound address itself (unless it is a wildcard) and `extra` (`--allowed-host`)."""
    names = {*LOOPBACK_HOSTS, *extra}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    return frozenset(n.strip().lower().strip("[]") for n in names if n.strip())


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a `Host` header (`name`, `name:port`, `[v6]:port`) names an allowed host."""
    if not header:
        return False
    value = header.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ("x" if rest else "")
    else:
        name, _, port = value.partition(":")
    if port and not re.fullmatch(r"[0-9]{1,5}", port):
        return False
    return name in allowed


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
    allowed_hosts: frozenset[str] | None = None,
) -> flask.Flask:
    """The pages app. `store` is where checks wrote their reports (ARTIFACT_URI); a
    check's own recorded `report_uri` is tried first. With `authenticator`, every
    request must pass it (401 otherwise). With `allowed_hosts` (`allowed_hosts_for`),
    a request whose Host header names another host is refused (400), before anything."""
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
    def _check_host() -> flask.Response | None:
        if allowed_hosts is None:
            return None
        header = flask.request.headers.get("Host")
        if host_allowed(header, allowed_hosts):
            return None
        log.warning("pages: request for another host refused", extra={"host": (header or "")[:100]})
        return _page("this server does not answer for that host name (--allowed-host)", 400)

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
        if not _COUNT.fullmatch(raw) or not 1 <= int(raw) <= MAX_CHECKS:
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


@dataclass(frozen=True)
class ServerLimits:
    """How much of this machine the pages server may be made to hold (waitress's settings)."""

    threads: int = 4  # requests served at once
    connection_limit: int = 64  # open connections; more wait in the listen backlog
    channel_timeout_s: int = 30  # an idle or half-open connection is closed after this
    cleanup_interval_s: int = 5  # how often idle connections are looked for
    max_body_bytes: int = 64 * 1024  # the pages are GETs


class PagesServer:
    """The pages app served by waitress in a background thread (stopped by `stop`)."""

    def __init__(
        self,
        app: flask.Flask,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        from waitress.server import create_server

        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            channel_timeout=limits.channel_timeout_s,
            cleanup_interval=limits.cleanup_interval_s,
            max_request_body_size=limits.max_body_bytes,
            ident="forecastguard",
            expose_tracebacks=False,
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self.limits = limits
        self._thread = threading.Thread(target=self._server.run, name="pages", daemon=True)

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
        """Stop serving: close every connection and the listening socket, wait for the thread.

        The closing runs in the server's own thread, handed over through waitress's
        trigger, which also wakes its loop: closed from here, the loop would only notice
        at its next poll timeout (a second), and the connections would stay open."""
        if self._thread.is_alive():
            self._server.trigger.pull_trigger(self._close_all)
            self._thread.join(timeout=10)
        else:
            self._close_all()
        self._server.task_dispatcher.shutdown(timeout=5)

    def _close_all(self) -> None:
        for channel in list(self._server._map.values()):
            channel.close()

    def __enter__(self) -> PagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
