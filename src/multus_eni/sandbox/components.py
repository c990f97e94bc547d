"""The product's processes run as they would in a cluster, against a world: for the demo and benchmarks.

`ControllerProcess` is `multus-eni controller` (the Deployment's container); `AgentProcess` is
`multus-eni agent` inside a node's namespace (the DaemonSet pod: hostNetwork = the node's netns).
Both log to a file; neither is a stand-in: they are the real commands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from multus_eni.sandbox.info import DUMMY_CREDENTIALS, NodeInfo, WorldInfo

MULTUS_ENI = str(Path(sys.executable).with_name("multus-eni"))


class Process:
    """A child process logging to `log_path`; `log_records()` reads this run's JSON log lines."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)  # fmt: skip
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        if not self.log_path.exists():
            return records
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            for line in log:
                with suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait: a graceful shutdown, as the kubelet does."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: a crash at whatever point the process is."""
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


class ControllerProcess(Process):
    def __init__(self, world: WorldInfo, cluster: str, log_path: Path, *extra: str, identity: str = "") -> None:
        argv = [
            MULTUS_ENI, "controller",
            "--kubeconfig", str(world.kubeconfig), "--region", world.region, "--ec2-endpoint", world.ec2_endpoint,
            "--cluster-name", cluster, "--namespace", "default", "--lease-name", f"multus-eni-{cluster}",
            "--bind-address", "127.0.0.1", "--metrics-port", "0", "--health-port", "0",
            *(["--identity", identity] if identity else []), *extra,
        ]  # fmt: skip
        super().__init__(argv, log_path, {
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        })  # fmt: skip

    def leading(self) -> bool:
        return any(r.get("msg") == "became leader" for r in self.log_records())


class AgentProcess(Process):
    def __init__(self, world: WorldInfo, node: NodeInfo, workdir: Path, *extra: str) -> None:
        argv = [
            "ip", "netns", "exec", node.netns, MULTUS_ENI, "agent",
            "--kubeconfig", str(world.node_kubeconfig), "--node-name", node.name,
            "--dpdk-checkpoint", str(workdir / f"dpdk-{node.name}.json"),
            "--sriov-config", str(workdir / f"pcidp-{node.name}.json"), *extra,
        ]  # fmt: skip
        super().__init__(argv, workdir / f"agent-{node.name}.log")
