"""The startup taint on the agent's Node: which taint list the Node should carry. Pure.

Only the taint with our key *and* effect is ours; other taints, and ours with another effect
(an admin's NoExecute, say), are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TAINT_KEY = "multus-eni.io/eni-not-ready"
DEFAULT_TAINT_EFFECT = "NoSchedule"


@dataclass(frozen=True)
class TaintSpec:
    key: str = DEFAULT_TAINT_KEY
    effect: str = DEFAULT_TAINT_EFFECT

    def matches(self, taint: dict[str, Any]) -> bool:
        return taint.get("key") == self.key and taint.get("effect") == self.effect


def has_taint(taints: Sequence[dict[str, Any]] | None, spec: TaintSpec) -> bool:
    return any(spec.matches(t) for t in taints or ())


def taints_with(
    taints: Sequence[dict[str, Any]] | None, spec: TaintSpec, present: bool
) -> list[dict[str, Any]] | None:
    """The node's new taint list, or None when it already is as wanted."""
    taints = list(taints or ())
    if has_taint(taints, spec) == present:
        return None
    if present:
        return [*taints, {"key": spec.key, "effect": spec.effect}]
    return [t for t in taints if not spec.matches(t)]
