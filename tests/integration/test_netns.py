"""Named network namespaces: one host process serves sockets inside many of them."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from multus_eni.sandbox import netns

pytestmark = pytest.mark.world


@pytest.fixture
def world_id() -> Iterator[str]:
    wid = "t" + secrets.token_hex(3)
    yield wid
    netns.cleanup(wid)


def _client_in(ns: str, port: int) -> subprocess.CompletedProcess[str]:
    """Connect to 127.0.0.1:port from a separate process inside namespace `ns`; print what it reads."""
    script = (
        "import socket,sys\n"
        f"s=socket.create_connection(('127.0.0.1',{port}),timeout=5)\n"
        "sys.stdout.write(s.recv(64).decode())\n"
    )
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )


def _serve_once(sock: socket.socket, greeting: bytes) -> threading.Thread:
    def serve() -> None:
        conn, _ = sock.accept()
        conn.sendall(greeting)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_socket_listening_in_a_namespace_is_reached_from_inside_it_and_not_from_the_host(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    inside = netns.listen_in_netns(ns, "127.0.0.1", 0)
    port = inside.getsockname()[1]
    # The same address and port are still free on the host: the two sockets live in different stacks.
    host = socket.create_server(("127.0.0.1", port))
    try:
        served = _serve_once(inside, b"from-the-namespace")
        result = _client_in(ns, port)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "from-the-namespace"
        served.join(timeout=5)

        # A host client reaches the host socket, never the one inside the namespace.
        _serve_once(host, b"from-the-host")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.recv(64) == b"from-the-host"
    finally:
        inside.close()
        host.close()


def test_host_cannot_connect_to_a_port_that_only_a_namespace_listens_on(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    with netns.listen_in_netns(ns, "127.0.0.1", 0) as inside:
        port = inside.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)


def test_run_in_netns_switches_only_its_own_thread(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    target = os.stat(netns.path(ns)).st_ino
    before = os.stat("/proc/thread-self/ns/net").st_ino

    inside = netns.run_in_netns(ns, lambda: os.stat("/proc/thread-self/ns/net").st_ino)

    assert inside == target
    assert os.stat("/proc/thread-self/ns/net").st_ino == before != target


def test_run_in_netns_passes_exceptions_back_to_the_caller(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)

    def fail() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        netns.run_in_netns(ns, fail)


def test_new_namespace_has_loopback_up(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    (lo,) = [link for link in netns.links(ns) if link["ifname"] == "lo"]
    assert "UP" in lo["flags"]


def test_creating_an_existing_namespace_fails_unless_asked_to_accept_it(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    with pytest.raises(netns.NetnsError, match="already exists"):
        netns.create(ns)
    netns.create(ns, exist_ok=True)


def test_cleanup_removes_every_namespace_of_a_world_and_nothing_else(world_id: str) -> None:
    other = world_id + "x"  # shares the prefix string but is another world
    names = [f"{world_id}-node-1", f"{world_id}-node-2", f"{world_id}-vpc", f"{other}-node-1"]
    for name in names:
        netns.create(name)
    try:
        removed = netns.cleanup(world_id)
        assert sorted(removed) == sorted(names[:3])
        assert netns.world_names(world_id) == []
        assert netns.exists(f"{other}-node-1")
    finally:
        netns.cleanup(other)


def test_address_added_to_loopback_is_reachable_only_inside(world_id: str) -> None:
    ns = f"{world_id}-node-1"
    netns.create(ns)
    netns.add_address(ns, "169.254.169.254/32")
    netns.add_address(ns, "169.254.169.254/32")  # idempotent
    with netns.listen_in_netns(ns, "169.254.169.254", 0) as inside:
        port = inside.getsockname()[1]
        served = _serve_once(inside, b"metadata")
        conn = netns.connect_in_netns(ns, "169.254.169.254", port)
        assert conn.recv(64) == b"metadata"
        conn.close()
        served.join(timeout=5)
