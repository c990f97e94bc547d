"""TCP forwarding from a port inside a node namespace to a port on the host.

Processes in a node namespace (the agent, Multus) cannot reach the host's 127.0.0.1, where the
apiserver listens. The forwarder listens on the *same* address and port inside the namespace, so
one kubeconfig (`https://127.0.0.1:<port>`) works on the host and in every node; TLS passes
through untouched (the apiserver certificate names 127.0.0.1).

Two threads per connection copy bytes each way; a half-close is passed on as a half-close, so
request/response protocols and long watches behave as over a direct connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from multus_eni.sandbox import netns

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class Forwarder:
    """Forward `listen_host:port` inside namespace `netns_name` to `target` on the host."""

    def __init__(
        self,
        netns_name: str,
        port: int,
        *,
        listen_host: str = "127.0.0.1",
        target: tuple[str, int] | None = None,
    ) -> None:
        self.netns = netns_name
        self.listen = (listen_host, port)
        self.target = target or ("127.0.0.1", port)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> Forwarder:
        self._sock = netns.listen_in_netns(self.netns, *self.listen)
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"forward-{self.netns}:{self.listen[1]}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._stopping.set()
        if self._sock is not None:
            # shutdown() wakes a thread blocked in accept(); close() alone does not on Linux.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            _close(conn)

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                inner, _ = self._sock.accept()
            except OSError:
                if not self._stopping.is_set():
                    log.exception("forwarder %s:%s stopped accepting", self.netns, self.listen[1])
                return
            # The host-side connection is made from this thread, which is in the host namespace.
            try:
                outer = socket.create_connection(self.target, timeout=10)
                outer.settimeout(None)
            except OSError as exc:
                log.warning("forwarder %s: cannot reach %s:%s: %s", self.netns, *self.target, exc)
                _close(inner)
                continue
            with self._lock:
                if self._stopping.is_set():
                    _close(inner)
                    _close(outer)
                    return
                self._conns.update((inner, outer))
            pair = _Pair(inner, outer, self._forget)
            for src, dst in ((inner, outer), (outer, inner)):
                threading.Thread(target=pair.pump, args=(src, dst), daemon=True).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.difference_update(socks)


class _Pair:
    """Two connected sockets; closed when both directions have finished."""

    def __init__(self, a: socket.socket, b: socket.socket, on_close) -> None:
        self.a, self.b = a, b
        self._open = 2
        self._lock = threading.Lock()
        self._on_close = on_close

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            # A reset on one side ends the whole connection, as it would end a direct one.
            for s in (self.a, self.b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._open -= 1
            done = self._open == 0
        if done:
            _close(self.a)
            _close(self.b)
            self._on_close(self.a, self.b)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
