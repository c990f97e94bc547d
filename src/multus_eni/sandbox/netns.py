"""Named network namespaces for the local world, and serving sockets inside them from one process.

A socket belongs to the network namespace of the thread that created it, for its whole life.
So a host process can own listening sockets inside many namespaces: a short-lived thread
`setns`-es into the namespace, creates and binds the socket, and exits; any thread may then
accept on it. Only that dedicated thread ever changes namespace, never the caller's.

Namespaces are created with iproute2 (`ip netns add`), which also sets up the shared
/var/run/netns mount the way every other tool (CNI plugins, `ip netns exec`) expects.
Names start with the world id (`w3f9c1-node-1`) so `cleanup(world_id)` finds a world's leftovers.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """An `ip` command or a namespace switch failed; the message carries the kernel's reason."""


def path(name: str) -> Path:
    return NETNS_DIR / name


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n netns] args...` and return its stdout."""
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    out = ip("-json", *args, netns=netns)
    return json.loads(out) if out.strip() else []


def exists(name: str) -> bool:
    return path(name).exists()


def list_names(prefix: str = "") -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def create(name: str, *, exist_ok: bool = False) -> None:
    """Create a named namespace with `lo` up (a fresh namespace's loopback is down)."""
    if exists(name):
        if not exist_ok:
            raise NetnsError(f"network namespace {name} already exists")
    else:
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    """Remove a named namespace; absent is fine. Links inside it go with it (veth peers too)."""
    if exists(name):
        ip("netns", "delete", name, check=False)
        # `ip netns delete` fails if the mount is busy; the bind mount file is what names it.
        if exists(name):
            raise NetnsError(f"could not delete network namespace {name}")


def world_names(world_id: str) -> list[str]:
    return [n for n in list_names(world_id) if n == world_id or n.startswith(world_id + "-")]


def cleanup(world_id: str) -> list[str]:
    """Delete every namespace of a world (its id is their prefix); returns the names removed."""
    removed = []
    for name in world_names(world_id):
        try:
            delete(name)
            removed.append(name)
        except NetnsError as exc:
            log.warning("leftover namespace: %s", exc)
    return removed


def enter(name: str) -> None:
    """Move the *calling thread* into namespace `name`. Use only on a thread you own and discard."""
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call fn(*args, **kwargs) on a fresh thread inside namespace `name` and return its result.

    Sockets fn creates stay in that namespace after it returns. Threads fn starts inherit the
    namespace, which is rarely what a caller wants: start them from your own thread instead.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            enter(name)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def listen_in_netns(
    name: str, host: str, port: int, *, backlog: int = 128, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket bound to host:port inside namespace `name` (listening if it is a stream socket)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    return run_in_netns(name, make)


def connect_in_netns(name: str, host: str, port: int, *, timeout: float = 5.0) -> socket.socket:
    """A TCP connection made from inside namespace `name` (for probes and tests)."""
    return run_in_netns(name, socket.create_connection, (host, port), timeout=timeout)


def add_address(name: str, cidr: str, dev: str = "lo") -> None:
    """Add an address to a link inside the namespace; already present is fine."""
    wanted = cidr if "/" in cidr else f"{cidr}/32"
    for link in ip_json("addr", "show", "dev", dev, netns=name):
        for addr in link.get("addr_info", []):
            if f"{addr['local']}/{addr['prefixlen']}" == wanted:
                return
    ip("addr", "add", wanted, "dev", dev, netns=name)


def links(name: str | None) -> list[dict[str, Any]]:
    """`ip -json link show` inside the namespace (host namespace when name is None)."""
    return ip_json("link", "show", netns=name)


def link_by_mac(name: str, mac: str) -> dict[str, Any] | None:
    mac = mac.lower()
    return next((lk for lk in links(name) if lk.get("address", "").lower() == mac), None)
