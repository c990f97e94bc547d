"""What a pass decides to do: EC2 actions, and what it records on each NodeENI.

Each action carries the key it is for (its backoff is kept under `failure_key`) and
a reason a person reads in logs and Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multus_eni.plan.model import ENIKey
from multus_eni.plan.static_ip import StaticAddressing


@dataclass(frozen=True)
class AttachTarget:
    instance_id: str
    device_index: int


@dataclass(frozen=True)
class CreateENI:
    key: ENIKey
    nodeeni: str
    subnet_id: str
    sg_ids: tuple[str, ...]
    description: str
    tags: Mapping[str, str]
    client_token: str
    # Attach right after the create, in the same chain, without waiting for a pass.
    then_attach: AttachTarget | None
    # Set after the attach; None leaves EC2's default for API attachments (false).
    delete_on_termination: bool | None
    reason: str
    # staticAddressing: the create picks the lowest free address itself (controller/static_address.py).
    static: StaticAddressing | None = None

    @property
    def failure_key(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class AttachENI:
    key: ENIKey
    nodeeni: str
    eni_id: str
    target: AttachTarget
    delete_on_termination: bool | None
    reason: str

    @property
    def failure_key(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class SetDeleteOnTermination:
    key: ENIKey
    nodeeni: str
    eni_id: str
    attachment_id: str
    value: bool
    reason: str

    @property
    def failure_key(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class DetachENI:
    key: ENIKey
    nodeeni: str
    eni_id: str
    attachment_id: str
    instance_id: str
    reason: str
    # Undesired ENIs are deleted once available (a later pass sees them available).
    garbage: bool = True

    @property
    def failure_key(self) -> str:
        return gc_failure_key(self.eni_id) if self.garbage else str(self.key)


@dataclass(frozen=True)
class DeleteENI:
    key: ENIKey
    nodeeni: str
    eni_id: str
    reason: str

    @property
    def failure_key(self) -> str:
        return gc_failure_key(self.eni_id)


Action = CreateENI | AttachENI | SetDeleteOnTermination | DetachENI | DeleteENI

MUTATING_CALLS_PER_ACTION = {
    # Upper bounds the call-accounting tests check against.
    CreateENI: 3,
    AttachENI: 2,
    SetDeleteOnTermination: 1,
    DetachENI: 1,
    DeleteENI: 1,
}


def gc_failure_key(eni_id: str) -> str:
    return f"eni/{eni_id}"


@dataclass
class NodeENIPlan:
    """What the pass records on one NodeENI."""

    name: str
    uid: str
    # The whole `status` object to write (compared with the current one by the caller).
    status: dict[str, Any]
    # Only for a NodeENI being deleted: every ENI of it is gone, the finalizer may go.
    finalizer_done: bool = False
    # A live NodeENI without our finalizer: add it before any ENI is created for it.
    needs_finalizer: bool = False
    # Some create of this NodeENI uses a pendingSince not yet stored in its status: the
    # status must be written before that create is sent (crash safety of the ClientToken).
    status_before_create: bool = False


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    nodeenis: dict[str, NodeENIPlan] = field(default_factory=dict)
    # Per node name: the `multus-eni.io/desired-interfaces` content for the node agent.
    node_interfaces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Failure keys still meaningful; the caller may forget the others.
    live_failure_keys: set[str] = field(default_factory=set)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds
