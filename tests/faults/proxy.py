"""A TCP proxy for the fault tests: it forwards to a real server and, on command, refuses
new connections, stalls every byte, or cuts a connection when the client sends a given
statement (before it reaches the server, or after the server's first reply bytes)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What the proxy does now; change the fields while it runs."""

    refuse: bool = False  # accept and close at once (the server seems down)
    stall: bool = False  # forward nothing, in either direction, while set
    cut_before: bytes | None = None  # a client packet containing this is dropped: cut
    cut_reply_to: bytes | None = None  # forward it, then cut inside the server's reply
    cuts: int = 0  # how many connections were cut so far
    seen: list[bytes] = field(default_factory=list)  # patterns that triggered a cut


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards each connection to `upstream`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        self.cut_all()

    def cut_all(self) -> None:
        """Close every open connection."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.faults.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _cut(self, *socks: socket.socket, pattern: bytes) -> None:
        self.faults.cuts += 1
        self.faults.seen.append(pattern)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        cut_reply = False
        try:
            while not self._stop.is_set():
                if self.faults.stall:
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([client, server], [], [], 0.05)
                for s in ready:
                    if self.faults.stall:
                        break
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if s is client:
                        f = self.faults
                        if f.cut_before and f.cut_before in data:
                            self._cut(client, server, pattern=f.cut_before)
                            return
                        if f.cut_reply_to and f.cut_reply_to in data:
                            cut_reply = True
                        server.sendall(data)
                    else:
                        if cut_reply:
                            client.sendall(data[: max(1, len(data) // 2)])
                            self._cut(client, server, pattern=self.faults.cut_reply_to or b"")
                            return
                        client.sendall(data)
        except (OSError, ValueError):  # closed by the other side or by a cut
            pass
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.close()
