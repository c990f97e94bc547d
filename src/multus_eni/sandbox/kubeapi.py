"""A real Kubernetes API: etcd + kube-apiserver on loopback, as controller-runtime's envtest runs them.

`KubeAPI(workdir).start()` generates a CA, a serving certificate, service-account keys
and an admin client certificate (O=system:masters), starts etcd (Debian's) and the
pinned kube-apiserver on free 127.0.0.1 ports, waits for `/readyz` and writes an admin
kubeconfig. RBAC stays on, so least-privilege roles can be tested against it:
`kubeconfig_for(user, groups)` hands out credentials for any other identity.

Children never outlive us: each runs in its own process group with
PR_SET_PDEATHSIG=SIGKILL (the kernel kills it when its parent dies, even by SIGKILL),
and `stop()` runs from `__exit__`, `atexit` and on SIGTERM. Measured startup (launch to
/readyz) on this 2-core machine: 2.2-3.2 s; `startup_seconds` records it per start.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from multus_eni.sandbox import binaries
from multus_eni.sandbox.certs import CertificateAuthority, KeyPair, service_account_key_pair

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "multus-eni-admin"
_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3


class KubeAPIError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries the tail of their logs."""


class _PortTaken(KubeAPIError):
    """A free port we picked was taken before the child bound it; worth another try."""


# --- child processes ---------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: SIGKILL this child when its parent goes away, however it goes."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _Spawner:
    """Forks children from one thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process:
    a child started from a short-lived worker thread would be killed with it. A daemon
    thread is never joined, so it ends only with the process.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._serve, name="kubeapi-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            try:
                future.set_result(call())
            except BaseException as err:  # handed to the caller
                future.set_exception(err)

    def run(self, call: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._requests.put((call, future))
        return future.result()


_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def _spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()

    def popen() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a terminal's Ctrl-C goes to us, not to it
                preexec_fn=_die_with_parent(os.getpid()),
                close_fds=True,
            )

    proc: subprocess.Popen[bytes] = _spawner.run(popen)
    return proc


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, wait, SIGKILL if it lingers. Only ever our own child."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _get_ok(url: str, ctx: ssl.SSLContext | None) -> str | None:
    """None if GET url answers 200, else what went wrong."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return None if resp.status == 200 else f"answered {resp.status}"
    except urllib.error.HTTPError as err:
        return f"answered {err.code}: {err.read()[:300]!r}"
    except (OSError, ssl.SSLError) as err:
        return str(err)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- stopping on exit and on SIGTERM ---------------------------------------------------------

_running: weakref.WeakSet[KubeAPI] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_atexit_registered = False
_sigterm_decided = False


def _stop_all() -> None:
    for api in list(_running):
        api.stop()


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    _stop_all()
    # Then die of SIGTERM as we would have without this handler.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    """atexit covers normal exit and Ctrl-C (KeyboardInterrupt unwinds); SIGTERM needs a handler.

    The SIGTERM handler can only be set from the main thread, and is set only if nobody
    else has one: a host program (pytest, the world daemon) keeps control of its signals.
    """
    global _atexit_registered, _sigterm_decided
    with _hooks_lock:
        if not _atexit_registered:
            atexit.register(_stop_all)
            _atexit_registered = True
        if not _sigterm_decided and threading.current_thread() is threading.main_thread():
            _sigterm_decided = True
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


# --- the harness -----------------------------------------------------------------------------


class KubeAPI:
    """etcd + kube-apiserver on loopback with an admin kubeconfig. Use as a context manager."""

    def __init__(self, workdir: Path, bind: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.bind = bind
        self.port = 0
        self.url = ""
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.startup_seconds: float | None = None  # measured by start(): launch to /readyz ok
        self._certs = self.workdir / "pki"
        self._ca: CertificateAuthority | None = None
        self._admin: KeyPair | None = None
        self._etcd_data: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    # public API

    def start(self, timeout: float = 90) -> None:
        started = time.monotonic()
        deadline = started + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        _install_exit_hooks()
        _running.add(self)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._launch(deadline)
                break
            except _PortTaken:
                self._stop_processes()
                if attempt == _PORT_ATTEMPTS:
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise
        self.startup_seconds = time.monotonic() - started
        self.kubeconfig_path.write_text(self.kubeconfig_text())
        self.kubeconfig_path.chmod(0o600)

    def stop(self) -> None:
        self._stop_processes()
        _running.discard(self)
        if self._etcd_data is not None:
            shutil.rmtree(self._etcd_data, ignore_errors=True)
            self._etcd_data = None

    def kubeconfig_text(self, server: str | None = None) -> str:
        """Admin kubeconfig (system:masters) for this apiserver, optionally naming another server URL."""
        assert self._admin is not None, "start() first"
        return self._kubeconfig(ADMIN_USER, self._admin, server)

    def kubeconfig_for(self, user: str, groups: Sequence[str] = (), server: str | None = None) -> str:
        """A kubeconfig for any identity: a client certificate with CN=user and O=groups."""
        assert self._ca is not None, "start() first"
        return self._kubeconfig(user, self._ca.issue_client(user, tuple(groups)), server)

    def pids(self) -> dict[str, int]:
        """PIDs of the running children by name (etcd, kube-apiserver)."""
        with self._lock:
            return {name: proc.pid for name, proc in self._procs.items() if proc.poll() is None}

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts this apiserver's CA and presents the admin client certificate."""
        ctx = ssl.create_default_context(cafile=str(self._certs / "ca.crt"))
        ctx.load_cert_chain(self._certs / "admin.crt", self._certs / "admin.key")
        return ctx

    def __enter__(self) -> KubeAPI:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # internals

    def _write_credentials(self) -> None:
        self._certs.mkdir(parents=True, exist_ok=True)
        self._ca = CertificateAuthority()
        (self._certs / "ca.crt").write_bytes(self._ca.cert_pem)
        serving = self._ca.issue_server(
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ips=tuple(dict.fromkeys((self.bind, "127.0.0.1", "10.96.0.1"))),
        )
        serving.write(self._certs, "apiserver")
        self._admin = self._ca.issue_client(ADMIN_USER, ("system:masters",))
        self._admin.write(self._certs, "admin")
        sa_private, sa_public = service_account_key_pair()
        (self._certs / "sa.key").write_bytes(sa_private)
        (self._certs / "sa.key").chmod(0o600)
        (self._certs / "sa.pub").write_bytes(sa_public)

    def _launch(self, deadline: float) -> None:
        etcd_port, peer_port, api_port = (_free_port(self.bind) for _ in range(3))
        # On disk in workdir, not tmpfs: measured here, 200 creates take the same time on both, and a
        # SIGKILLed parent would leave ~120 MB (etcd preallocates its WAL) in RAM that nobody frees.
        self._etcd_data = self.workdir / "etcd-data"
        shutil.rmtree(self._etcd_data, ignore_errors=True)  # left by an attempt that lost its port
        etcd_url = f"http://{self.bind}:{etcd_port}"
        peer_url = f"http://{self.bind}:{peer_port}"
        self._start("etcd", [
            str(binaries.etcd()),
            "--name=default",
            f"--data-dir={self._etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
        ])
        # Both start at once: kube-apiserver retries etcd, and its own initialisation overlaps etcd's
        # (measured: ~3.0 s to /readyz this way, ~3.9 s waiting for etcd's /health first).
        self.port = api_port
        self.url = f"https://{self.bind}:{api_port}"
        c = self._certs
        self._start("kube-apiserver", [
            str(binaries.kube_apiserver()),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.bind}",
            f"--advertise-address={self.bind}",
            f"--secure-port={api_port}",
            f"--cert-dir={c}",
            f"--tls-cert-file={c / 'apiserver.crt'}",
            f"--tls-private-key-file={c / 'apiserver.key'}",
            f"--client-ca-file={c / 'ca.crt'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={c / 'sa.pub'}",
            f"--service-account-signing-key-file={c / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # No controller-manager creates `default` service accounts: the admission plugin
            # would reject every Pod. envtest drops it for the same reason.
            "--disable-admission-plugins=ServiceAccount",
            # The kubernetes Service would get a loopback endpoint, which validation refuses.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ])
        self._wait_ready(deadline)

    def _start(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("a") as f:
            f.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        with self._lock:
            self._procs[name] = _spawn(argv, log)

    def _wait_ready(self, deadline: float) -> None:
        ctx = self.ssl_context()
        self._poll(deadline, lambda: _get_ok(f"{self.url}/readyz", ctx), "kube-apiserver /readyz")

    def _poll(self, deadline: float, check: Callable[[], str | None], what: str) -> None:
        """Until check() returns None (ready) or a child exits or the deadline passes."""
        delay = 0.02
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    self._fail(f"{name} exited with code {proc.returncode}")
            problem = check()
            if problem is None:
                return
            if time.monotonic() > deadline:
                self._fail(f"{what} not ready before the deadline ({problem})")
            time.sleep(delay)  # polling a server that is starting; not a test sleep
            delay = min(delay * 1.5, 0.25)

    def _fail(self, reason: str) -> None:
        logs = {name: _tail(self.workdir / f"{name}.log") for name in ("etcd", "kube-apiserver")}
        taken = any("address already in use" in text for text in logs.values())
        details = "\n".join(f"--- {name}.log (tail) ---\n{text}" for name, text in logs.items())
        error = _PortTaken if taken else KubeAPIError
        raise error(f"kube-apiserver at {self.url}: {reason}\n{details}")

    def _stop_processes(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, {}
        # apiserver first: stopping etcd under it only makes it log errors on the way down.
        for name in ("kube-apiserver", "etcd"):
            if name in procs:
                _terminate(procs[name])

    def _kubeconfig(self, user: str, creds: KeyPair, server: str | None) -> str:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        assert self._ca is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {
                "server": server or self.url,
                "certificate-authority-data": b64(self._ca.cert_pem),
            }}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(creds.cert_pem),
                "client-key-data": b64(creds.key_pem),
            }}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user}}],
            "current-context": "sandbox",
        }
        return yaml.safe_dump(config, sort_keys=False)
