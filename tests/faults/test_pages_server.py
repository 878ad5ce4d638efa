"""The pages server of `forecastguard serve` under hostile requests (issue 28): `?n=`
with non-ASCII digits, foreign Host headers (DNS rebinding), and half-open connections
against waitress's timeout and connection limit. Served over real sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from forecastguard.db.engine import make_engine
from forecastguard.report.app import (
    PagesServer,
    ServerLimits,
    allowed_hosts_for,
    create_app,
    host_allowed,
)


@pytest.fixture
def pages(sqlite_url):
    engine = make_engine(sqlite_url)
    app = create_app(engine, allowed_hosts=allowed_hosts_for("127.0.0.1", ("pages.example",)))
    limits = ServerLimits(threads=2, connection_limit=50, channel_timeout_s=1, cleanup_interval_s=1)
    with PagesServer(app, "127.0.0.1", 0, limits) as server:
        yield server
    engine.dispose()


N_CASES = [
    ("superscript-two", "²"),
    ("arabic-indic-one", "١"),
    ("fullwidth-five", "５"),
    ("zero", "0"),
    ("negative", "-1"),
    ("float", "2.5"),
    ("exponent", "1e3"),
    ("space", " 5"),
    ("too-many", "1000000"),
    ("huge", "9" * 5000),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [c[1] for c in N_CASES], ids=[c[0] for c in N_CASES])
def test_n_takes_ascii_digits_only(pages, value):
    answer = requests.get(pages.url, params={"n": value}, timeout=30)
    assert answer.status_code == 400
    assert "n must be a whole number" in answer.text


def test_n_in_range_is_served(pages):
    assert requests.get(pages.url, params={"n": "5"}, timeout=30).status_code == 200


HOSTS = [
    ("rebinding-name", "evil.example", 400),
    ("rebinding-name-port", "evil.example:8083", 400),
    ("suffix-trick", "127.0.0.1.evil.example", 400),
    ("empty", "", 400),
    ("bad-port", "127.0.0.1:http", 400),
    ("loopback", "127.0.0.1:8083", 200),
    ("localhost", "localhost", 200),
    ("ipv6-loopback", "[::1]:8083", 200),
    ("allowed-host", "pages.example:8083", 200),
    ("allowed-host-case", "PAGES.example", 200),
]


@pytest.mark.parametrize(("host", "status"), [c[1:] for c in HOSTS], ids=[c[0] for c in HOSTS])
def test_a_foreign_host_header_is_refused(pages, host, status, caplog):
    answer = requests.get(pages.url, headers={"Host": host}, timeout=30)
    assert answer.status_code == status
    if status == 400:
        assert "does not answer for that host name" in answer.text
        assert any("another host refused" in r.getMessage() for r in caplog.records)


def test_host_allowed_parses_ports_and_brackets():
    allowed = allowed_hosts_for("0.0.0.0", ["Pages.Example"])
    assert "0.0.0.0" not in allowed and "pages.example" in allowed
    assert host_allowed("[::1]", allowed) and not host_allowed("[::1]x", allowed)
    assert not host_allowed(None, allowed) and not host_allowed("::1", allowed)


def test_half_open_connections_are_capped_timed_out_and_hold_no_threads(sqlite_url):
    """The issue's probe: 300 connections that send half a request. waitress holds at
    most `connection_limit` of them (the rest wait in the listen backlog), closes each
    after `channel_timeout_s`, and starts no thread for any; the pages answer after."""
    engine = make_engine(sqlite_url)
    app = create_app(engine, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    limits = ServerLimits(
        threads=2, connection_limit=100, channel_timeout_s=1, cleanup_interval_s=1
    )
    server = PagesServer(app, "127.0.0.1", 0, limits).start()
    before = threading.active_count()
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            socks.append(s)
        most_open, closed = 0, set()
        deadline = time.monotonic() + 60
        while len(closed) < len(socks) and time.monotonic() < deadline:
            most_open = max(most_open, len(server._server._map))
            assert threading.active_count() <= before
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                s.settimeout(0.001)
                try:
                    if s.recv(1) == b"":
                        closed.add(i)
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    closed.add(i)
            time.sleep(0.2)
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} still held"
        assert most_open <= limits.connection_limit
        answer = requests.get(server.url, timeout=30)
        assert answer.status_code == 200
    finally:
        for s in socks:
            s.close()
        server.stop()
        engine.dispose()


def test_stop_closes_open_connections_and_ends_the_serving_thread(sqlite_url):
    """A client that keeps its connection open (keep-alive, or half a request) does not
    keep the server alive: `stop` closes it, the serving thread and waitress's worker
    threads end, and stopping twice is harmless."""
    engine = make_engine(sqlite_url)
    app = create_app(engine, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    before = threading.active_count()
    server = PagesServer(app, "127.0.0.1", 0, ServerLimits(threads=2)).start()
    kept = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    kept.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert kept.recv(12).startswith(b"HTTP/1.1 200")  # answered; the connection stays open
    half = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    half.sendall(b"GET / HTTP/1.1\r\n")
    try:
        server.stop()
        assert not server._thread.is_alive()
        for s in (kept, half):
            s.settimeout(30)
            try:
                while chunk := s.recv(65536):  # the rest of the answer, then the close
                    assert s is kept, chunk
            except ConnectionResetError:
                pass  # closed with a reset: closed all the same
        assert threading.active_count() <= before
        server.stop()
    finally:
        kept.close()
        half.close()
        engine.dispose()
