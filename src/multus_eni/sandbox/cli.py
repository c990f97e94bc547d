"""`multus-eni sandbox up|down|status`: the local world as a background process.

`up` starts the world daemon (`python -m multus_eni.sandbox.daemon`) in its own session,
streams its progress lines, and returns once the daemon has written world.json (or
fails with the tail of the daemon's log). `down` stops it and removes its namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from multus_eni.sandbox.layout import DEFAULT_REGION

DEFAULT_DIR = Path(".world")
READY_TIMEOUT = 240.0


def register(subparsers: argparse._SubParsersAction) -> None:
    sandbox = subparsers.add_parser("sandbox", help="the local world: real apiserver, EC2 emulator, node namespaces")
    actions = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="start a world in the background and wait until it is ready")
    add_world_arguments(up)
    up.set_defaults(func=lambda args: up_command(args))

    down = actions.add_parser("down", help="stop a world and remove its namespaces")
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="world folder (default: .world)")
    down.set_defaults(func=lambda args: down_command(args.dir))

    status = actions.add_parser("status", help="print world.json of a running world")
    status.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    status.set_defaults(func=lambda args: status_command(args.dir))


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="world folder (default: .world)")
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument("--azs", type=int, default=2, help="availability zones, 1-3 (default 2)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--instance-type", default="m5.large")
    parser.add_argument("--attach-delay", type=float, default=0.3, help="seconds in 'attaching' (EC2 fidelity)")
    parser.add_argument("--detach-delay", type=float, default=0.3, help="seconds in 'detaching'")
    parser.add_argument(
        "--no-netns", action="store_true", help="no node namespaces, IMDS or hypervisor (benchmarks at 1000 nodes)"
    )


def daemon_argv(args: argparse.Namespace, owner_pid: int | None = None) -> list[str]:
    argv = [
        sys.executable, "-m", "multus_eni.sandbox.daemon",
        "--dir", str(Path(args.dir).resolve()),
        "--nodes", str(args.nodes), "--azs", str(args.azs), "--region", args.region,
        "--instance-type", args.instance_type,
        "--attach-delay", str(args.attach_delay), "--detach-delay", str(args.detach_delay),
    ]  # fmt: skip
    if args.no_netns:
        argv.append("--no-netns")
    if owner_pid:
        argv += ["--owner-pid", str(owner_pid)]
    return argv


def start_world(args: argparse.Namespace, owner_pid: int | None = None, progress=print) -> Path:
    """Start the daemon and block until world.json exists; returns the world folder."""
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    world_json = directory / "world.json"
    if world_json.exists():
        pid = json.loads(world_json.read_text()).get("pid")
        if pid and _alive(pid):
            raise SystemExit(f"a world is already running in {directory} (pid {pid}); `multus-eni sandbox down` first")
        world_json.unlink()
    (directory / "progress.log").unlink(missing_ok=True)
    log_path = directory / "world.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        daemon_argv(args, owner_pid), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    progress_path = directory / "progress.log"
    shown = 0
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        shown = _show_progress(progress_path, shown, progress)
        if world_json.exists():
            _show_progress(progress_path, shown, progress)
            return directory
        if process.poll() is not None:
            raise SystemExit(f"the world failed to start (exit {process.returncode}); last lines of {log_path}:\n"
                             + _tail(log_path))
        if time.monotonic() > deadline:
            process.terminate()
            raise SystemExit(f"the world was not ready after {READY_TIMEOUT:.0f}s; see {log_path}:\n" + _tail(log_path))
        time.sleep(0.1)


def stop_world(directory: Path, timeout: float = 30.0) -> bool:
    """Stop the daemon of the world in `directory`; True if one was running."""
    directory = Path(directory).resolve()
    pid_file = directory / "daemon.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    if not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    (directory / "world.json").unlink(missing_ok=True)
    return True


def up_command(args: argparse.Namespace) -> int:
    directory = start_world(args)
    print(f"world ready: {directory}/world.json, kubeconfig {directory}/kubeconfig, "
          f"EC2 endpoint in {directory}/ec2-endpoint")
    return 0


def down_command(directory: Path) -> int:
    print("world stopped" if stop_world(directory) else f"no world running in {directory}")
    return 0


def status_command(directory: Path) -> int:
    path = Path(directory) / "world.json"
    if not path.exists():
        print(f"no world in {directory}", file=sys.stderr)
        return 1
    print(path.read_text())
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _show_progress(path: Path, shown: int, progress) -> int:
    if not path.exists():
        return shown
    lines = path.read_text().splitlines()
    for line in lines[shown:]:
        progress(line)
    return len(lines)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"
