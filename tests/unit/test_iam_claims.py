"""deploy/iam-policy.json allows the calls a claim makes, and no tag write that would make an ENI "ours".

A tiny reading of IAM, enough for these statements: an Allow statement covers a request when its
action and resource match and every tag key of the request matches its `ForAllValues` list.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from multus_eni.plan.claim_marker import claim_write, marker_tags
from multus_eni.plan.ledger import LEDGER_PREFIX
from multus_eni.plan.ownership import CLUSTER, NODEENI_UID

POLICY = json.loads((Path(__file__).parents[2] / "deploy" / "iam-policy.json").read_text())
ENI = "arn:aws:ec2:eu-west-2:111122223333:network-interface/eni-0123456789abcdef0"
INSTANCE = "arn:aws:ec2:eu-west-2:111122223333:instance/i-0123456789abcdef0"


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowing(action: str, resource: str, keys: list[str]) -> list[dict[str, Any]]:
    out = []
    for statement in POLICY["Statement"]:
        if statement["Effect"] != "Allow" or action not in _list(statement["Action"]):
            continue
        if not any(fnmatchcase(resource, r) for r in _list(statement["Resource"])):
            continue
        condition = statement.get("Condition", {})
        if "ec2:CreateAction" in condition.get("StringEquals", {}):
            continue  # tags at create time only
        for operator in ("ForAllValues:StringLike", "ForAllValues:StringEquals"):
            allowed = _list(condition.get(operator, {}).get("aws:TagKeys", []))
            if allowed and not all(any(fnmatchcase(k, a) for a in allowed) for k in keys):
                break
        else:
            out.append(statement)
    return out


def test_the_claim_marker_with_no_manage_can_be_written_on_a_claimable_eni_only() -> None:
    keys = sorted(claim_write({}, marker_tags("prod", "uid", "node", "i-1", 0.0)))
    (statement,) = allowing("ec2:CreateTags", ENI, keys)
    assert "aws:ResourceTag/cluster" in statement["Condition"]["StringEquals"]


def test_the_marker_can_be_removed_but_no_manage_cannot() -> None:
    marker = sorted(marker_tags("prod", "uid", "node", "i-1", 0.0))
    assert allowing("ec2:DeleteTags", ENI, marker)
    assert not allowing("ec2:DeleteTags", ENI, ["node.k8s.amazonaws.com/no_manage"])


def test_no_tag_write_after_creation_can_make_an_eni_ours() -> None:
    for key in (CLUSTER, NODEENI_UID):
        assert not allowing("ec2:CreateTags", ENI, [key]), f"{key} may only be written at create time"


def test_the_instance_tag_and_the_pod_ip_ledger_are_allowed() -> None:
    assert allowing("ec2:CreateTags", INSTANCE, ["multus-network-attached"])
    assert allowing("ec2:DeleteTags", INSTANCE, ["multus-network-attached"])
    assert not allowing("ec2:CreateTags", INSTANCE, ["Name"])
    assert allowing("ec2:CreateTags", ENI, [f"{LEDGER_PREFIX}0"])


def test_describe_tags_is_allowed_for_the_instance_tag_lookup() -> None:
    assert allowing("ec2:DescribeTags", "*", [])
