"""The world daemon: one process that holds a whole local world until told to stop.

Started by `multus-eni sandbox up` (or the test fixture). It writes progress lines to
DIR/progress.log, then DIR/kubeconfig, DIR/kubeconfig-node, DIR/ec2-endpoint and finally
DIR/world.json (its presence means "ready"). It stops on SIGTERM/SIGINT, or when its
owner process exits (`--owner-pid`, used by test sessions so an interrupted run leaks
nothing), and removes its namespaces on the way out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import select
import signal
import sys
import threading
import time
from pathlib import Path

from multus_eni.diagnostics import enable_stack_dumps
from multus_eni.sandbox.world import World, WorldConfig

log = logging.getLogger("multus_eni.sandbox")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="multus_eni.sandbox.daemon")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--azs", type=int, default=2)
    parser.add_argument("--region", default="eu-west-2")
    parser.add_argument("--instance-type", default="m5.large")
    parser.add_argument("--attach-delay", type=float, default=0.3)
    parser.add_argument("--detach-delay", type=float, default=0.3)
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--owner-pid", type=int)
    parser.add_argument("--id", default=None, help="world id (default: random, 'w' + 5 hex digits)")
    return parser.parse_args(argv)


def wait_for_stop(owner_pid: int | None) -> None:
    """Block until SIGTERM/SIGINT arrives or the owner process exits."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    if owner_pid is None:
        while not stop.wait(3600):
            pass
        return
    # pidfd: the kernel tells us when the owner exits; no polling of /proc.
    pidfd = os.pidfd_open(owner_pid)
    while not stop.is_set():
        readable, _, _ = select.select([pidfd], [], [], 0.5)
        if readable:
            log.info("owner process %d exited; stopping the world", owner_pid)
            return


def main(argv: list[str] | None = None) -> int:
    # stderr is DIR/world.log (start_world): a crash in C code (SIGSEGV, SIGABRT) leaves every
    # thread's Python stack there instead of only an exit status of -11; so does kill -USR1.
    enable_stack_dumps()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2", "werkzeug"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daemon.pid").write_text(str(os.getpid()))
    progress_file = (directory / "progress.log").open("w", buffering=1)
    started = time.monotonic()

    def progress(message: str) -> None:
        line = f"[{time.monotonic() - started:5.1f}s] {message}"
        progress_file.write(line + "\n")
        log.info(message)

    config = WorldConfig(
        directory=directory,
        world_id=args.id or "w" + secrets.token_hex(3)[:5],
        nodes=args.nodes,
        azs=args.azs,
        region=args.region,
        instance_type=args.instance_type,
        attach_delay=args.attach_delay,
        detach_delay=args.detach_delay,
        netns=not args.no_netns,
    )
    world = World(config, progress)
    try:
        description = world.up()
        description["pid"] = os.getpid()
        tmp = directory / "world.json.tmp"
        tmp.write_text(json.dumps(description, indent=2))
        tmp.rename(directory / "world.json")
        progress(f"world {config.world_id} ready")
        wait_for_stop(args.owner_pid)
    except Exception:
        log.exception("world failed")
        return 1
    finally:
        world.down()
        (directory / "world.json").unlink(missing_ok=True)
        (directory / "daemon.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
