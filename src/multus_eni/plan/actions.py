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


# -- claims of pre-created ENIs (plan/claim.py) ------------------------------------------


@dataclass(frozen=True)
class ClaimENI:
    """Claim a pre-created ENI for a node: write our claim marker on it first (write-ahead: a
    restarted controller knows what it was doing), then attach. The attach decides races:
    `InvalidNetworkInterface.InUse` means someone else holds it and this node gets nothing."""

    key: ENIKey
    nodeeni: str
    eni_id: str
    # Tags written before the attach; empty when the ENI already carries exactly these.
    marker: Mapping[str, str]
    target: AttachTarget
    reason: str

    @property
    def failure_key(self) -> str:
        return claim_failure_key(self.key.nodeeni_uid, self.key.node, self.eni_id)


@dataclass(frozen=True)
class ReleaseENI:
    """Detach a claimed ENI (normal detach; never deleted: it is the user's). Its marker goes
    in a later pass, once it is available again, unless another node claims it first."""

    key: ENIKey
    nodeeni: str
    eni_id: str
    attachment_id: str
    instance_id: str
    reason: str
    # Removed from the instance right after the detach when no later pass will see that
    # instance (its Node is gone): tag key -> the value it must still have.
    instance_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def failure_key(self) -> str:
        return claim_resource_failure_key(self.eni_id)


@dataclass(frozen=True)
class TagResource:
    """CreateTags on one ENI or instance (a claim's instance tag)."""

    key: ENIKey
    nodeeni: str
    resource_id: str
    tags: Mapping[str, str]
    reason: str

    @property
    def failure_key(self) -> str:
        return claim_resource_failure_key(self.resource_id)


@dataclass(frozen=True)
class UntagResource:
    """DeleteTags with values: a tag goes only if it still has the value we saw, so a marker
    another claim has just rewritten survives."""

    key: ENIKey
    nodeeni: str
    resource_id: str
    tags: Mapping[str, str]
    reason: str

    @property
    def failure_key(self) -> str:
        return claim_resource_failure_key(self.resource_id)


Action = (
    CreateENI
    | AttachENI
    | SetDeleteOnTermination
    | DetachENI
    | DeleteENI
    | ClaimENI
    | ReleaseENI
    | TagResource
    | UntagResource
)

MUTATING_CALLS_PER_ACTION = {
    # Upper bounds the call-accounting tests check against.
    CreateENI: 3,
    AttachENI: 2,
    SetDeleteOnTermination: 1,
    DetachENI: 1,
    DeleteENI: 1,
    ClaimENI: 2,
    ReleaseENI: 2,
    TagResource: 1,
    UntagResource: 1,
}


def gc_failure_key(eni_id: str) -> str:
    return f"eni/{eni_id}"


def claim_failure_key(nodeeni_uid: str, node: str, eni_id: str) -> str:
    """One claim attempt: the planner reads the node (backoff) and the ENI (in use) back from it."""
    return f"claim/{nodeeni_uid}/{node}/{eni_id}"


def claim_resource_failure_key(resource_id: str) -> str:
    return f"claim-res/{resource_id}"


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
    # Per node name: labels to set (a value) or remove (None); claims label their holders.
    node_labels: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # Failure keys still meaningful; the caller may forget the others.
    live_failure_keys: set[str] = field(default_factory=set)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds
