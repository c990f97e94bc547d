"""Running `multus-eni controller` as a real process against the world, and looking at the results.

Tests share the world's nodes, so each test module uses its own cluster name (ownership
tag), its own node label key and its own NodeENI names, and removes what it made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from multus_eni.kube.client import NodeENI
from multus_eni.plan.ownership import CLUSTER
from multus_eni.sandbox.info import DUMMY_CREDENTIALS, WorldInfo

CONTROLLER = [str(Path(sys.executable).with_name("multus-eni")), "controller"]
MUTATING = (
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling interval, not a wait for the system to settle


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Controller:
    """One `multus-eni controller` process; its JSON log goes to a file the test can read."""

    def __init__(self, world: WorldInfo, cluster: str, log_dir: Path, *extra: str, identity: str | None = None):
        self.world = world
        self.cluster = cluster
        self.identity = identity or unique(cluster)
        self.log_path = log_dir / f"controller-{self.identity}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> Controller:
        args = [
            *CONTROLLER,
            "--kubeconfig", str(self.world.kubeconfig),
            "--region", self.world.region,
            "--ec2-endpoint", self.world.ec2_endpoint,
            "--cluster-name", self.cluster,
            "--namespace", "default",
            "--lease-name", f"multus-eni-{self.cluster}",
            "--identity", self.identity,
            "--bind-address", "127.0.0.1",
            "--metrics-port", "0",
            "--health-port", "0",
            "--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1",
            "--log-level", "DEBUG",
            *self.extra,
        ]  # fmt: skip
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        }
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def log_records(self) -> list[dict[str, Any]]:
        """This run's log lines that are JSON objects."""
        records = []
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            for line in log:
                with suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def _port(self, field: str) -> int:
        def find() -> int | None:
            assert self.proc is not None and self.proc.poll() is None, f"controller exited: {self.tail()}"
            return next((r[field] for r in self.log_records() if field in r), None)

        return wait_for(find, 20, f"the controller to log its {field}")

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self._port('health_port')}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._port('metrics_port')}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            sample, value = line.rsplit(" ", 1)
            sample_name, _, label_text = sample.partition("{")
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if sample_name == name and got == want:
                return float(value)
        return 0.0

    def leading(self) -> bool:
        return any(r.get("msg") == "became leader" for r in self.log_records())

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait: the graceful shutdown."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash at whatever point the controller is."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def running(
    world: WorldInfo, cluster: str, log_dir: Path, *extra: str, identity: str | None = None
) -> Iterator[Controller]:
    controller = Controller(world, cluster, log_dir, *extra, identity=identity).start()
    try:
        wait_for(controller.leading, 30, "the controller to lead")
        yield controller
    finally:
        controller.stop()


# -- Kubernetes side -----------------------------------------------------------------------------


def nodeeni_manifest(name: str, label: str, **spec: Any) -> dict[str, Any]:
    key, _, value = label.partition("=")
    return {
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "NodeENI",
        "metadata": {"name": name},
        "spec": {"nodeSelector": {key: value or "true"}, **spec},
    }


def create_nodeeni(world: WorldInfo, manifest: dict[str, Any]) -> None:
    world.kube().create(NodeENI.from_dict(manifest))


def get_nodeeni(world: WorldInfo, name: str) -> dict[str, Any] | None:
    try:
        return world.kube().get(NodeENI, name).to_dict()
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def delete_nodeeni(world: WorldInfo, name: str, timeout: float = 30) -> None:
    """Delete and wait until the finalizer let it go (its ENIs are cleaned by then)."""
    with suppress(ApiError):
        world.kube().delete(NodeENI, name)
    wait_for(lambda: get_nodeeni(world, name) is None, timeout, f"NodeENI {name} to be gone")


def label(world: WorldInfo, nodes: list[str], key_value: str | None, remove: str | None = None) -> None:
    labels: dict[str, str | None] = {}
    if key_value:
        key, _, value = key_value.partition("=")
        labels[key] = value or "true"
    if remove:
        labels[remove] = None
    client = world.kube()
    for name in nodes:
        client.patch(Node, name, {"metadata": {"labels": labels}}, patch_type=PatchType.MERGE)


def status_of(world: WorldInfo, name: str) -> dict[str, Any]:
    return (get_nodeeni(world, name) or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def events_for(world: WorldInfo, kind: str, name: str) -> list[dict[str, Any]]:
    events = world.kube().list(
        Event, namespace="default", fields={"involvedObject.kind": kind, "involvedObject.name": name}
    )
    return [e.to_dict() for e in events]


# -- EC2 side ------------------------------------------------------------------------------------


def enis_of(world: WorldInfo, cluster: str) -> list[dict[str, Any]]:
    return world.ec2().describe_network_interfaces(Filters=[{"Name": f"tag:{CLUSTER}", "Values": [cluster]}])[
        "NetworkInterfaces"
    ]


def tags(eni: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}


def emulator_calls(world: WorldInfo) -> dict[str, int]:
    with urllib.request.urlopen(f"{world.ec2_endpoint}/_fidelity/calls", timeout=5) as response:
        return json.loads(response.read())


def configure_emulator(world: WorldInfo, **settings: Any) -> None:
    request = urllib.request.Request(
        f"{world.ec2_endpoint}/_fidelity/config",
        data=json.dumps(settings).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def delta(before: dict[str, int], after: dict[str, int], operations: tuple[str, ...] = MUTATING) -> dict[str, int]:
    return {op: after.get(op, 0) - before.get(op, 0) for op in operations if after.get(op, 0) != before.get(op, 0)}
