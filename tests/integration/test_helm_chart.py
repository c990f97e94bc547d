"""The Helm chart: renders, is accepted by the real apiserver, and grants no more than the components use."""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from lightkube import Client
from lightkube.codecs import load_all_yaml
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import Namespace

from multus_eni.cli import build_parser
from multus_eni.sandbox import binaries
from multus_eni.sandbox.info import WorldInfo

pytestmark = pytest.mark.world

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "multus-eni"
KUBE_VERSION = binaries.pinned_versions()["KUBERNETES_VERSION"]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binaries.helm()), *args], capture_output=True, text=True, check=check, timeout=120)


def render(release: str, namespace: str, *values: str) -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
               "--include-crds", "--set", "clusterName=chart-test", *values).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_chart_lints_and_refuses_to_render_without_a_cluster_name() -> None:
    lint = helm("lint", str(CHART), "--set", "clusterName=chart-test", "--kube-version", KUBE_VERSION, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    missing = helm("template", "x", str(CHART), "--kube-version", KUBE_VERSION, check=False)
    assert missing.returncode != 0
    assert "clusterName is required" in missing.stderr


def test_every_rendered_object_is_accepted_by_the_apiserver(world: WorldInfo) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    client: Client = world.kube()
    client.create(Namespace(metadata={"name": namespace}))
    try:
        docs = render("dry", namespace, "--set", "agent.dpdk.enabled=true")
        kinds = {doc["kind"] for doc in docs}
        assert {"CustomResourceDefinition", "Deployment", "DaemonSet", "ClusterRole", "Role", "ServiceAccount",
                "Service"} <= kinds  # fmt: skip
        for obj in load_all_yaml(yaml.safe_dump_all(docs)):
            # Server-side dry run: full validation and defaulting by the real apiserver, nothing stored.
            client.apply(obj, field_manager="chart-test", force=True, dry_run=True)
    finally:
        client.delete(Namespace, namespace)


def test_rendered_command_lines_are_accepted_by_the_real_cli() -> None:
    docs = render("args", "kube-system")
    workloads = {doc["kind"]: doc for doc in docs if doc["kind"] in {"Deployment", "DaemonSet"}}
    parser = build_parser()
    for kind, doc in workloads.items():
        container = doc["spec"]["template"]["spec"]["containers"][0]
        # $(VAR) is expanded by the kubelet; any value will do for parsing.
        args = [arg.replace("$(POD_NAMESPACE)", "kube-system").replace("$(NODE_NAME)", "n1")
                for arg in container["args"]]  # fmt: skip
        try:
            parser.parse_args(args)
        except SystemExit as exit_:
            raise AssertionError(f"{kind} args rejected by multus-eni: {shlex.join(args)}") from exit_


def can(client: Client, user: str, verb: str, resource: str, *, group: str = "", namespace: str | None = None,
        subresource: str | None = None, name: str | None = None) -> bool:  # fmt: skip
    review = SubjectAccessReview(spec={
        "user": user,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}", "system:authenticated"],
        "resourceAttributes": {k: v for k, v in {
            "verb": verb, "group": group, "resource": resource, "namespace": namespace,
            "subresource": subresource, "name": name}.items() if v is not None},
    })  # fmt: skip
    return bool(client.create(review).status.allowed)


def test_rbac_grants_what_the_components_need_and_nothing_more(world: WorldInfo) -> None:
    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    release = namespace  # cluster-scoped names are release-prefixed: unique per test run
    client: Client = world.kube()
    client.create(Namespace(metadata={"name": namespace}))
    rbac_kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [o for o in load_all_yaml(yaml.safe_dump_all(render(release, namespace))) if o.kind in rbac_kinds]
    try:
        for obj in objects:
            client.apply(obj, field_manager="chart-test", force=True)
        controller = f"system:serviceaccount:{namespace}:multus-eni-controller"
        agent = f"system:serviceaccount:{namespace}:multus-eni-agent"
        needed = [
            (controller, "watch", "nodeenis", "networking.k8s.aws", None, None, None),
            (controller, "patch", "nodeenis", "networking.k8s.aws", None, "status", None),
            (controller, "patch", "nodes", "", None, None, None),
            (controller, "watch", "pods", "", None, None, None),
            (controller, "watch", "network-attachment-definitions", "k8s.cni.cncf.io", None, None, None),
            (controller, "create", "events", "", "default", None, None),
            (controller, "create", "leases", "coordination.k8s.io", namespace, None, None),
            (controller, "update", "leases", "coordination.k8s.io", namespace, None, "multus-eni-controller"),
            (agent, "watch", "nodes", "", None, None, None),
            (agent, "patch", "nodes", "", None, None, None),
        ]
        for user, verb, resource, group, ns, sub, name in needed:
            assert can(client, user, verb, resource, group=group, namespace=ns, subresource=sub, name=name), (
                f"{user} cannot {verb} {resource}/{sub or ''}")
        forbidden = [
            (controller, "get", "secrets", "", namespace, None, None),
            (controller, "create", "pods", "", None, "exec", None),
            (controller, "delete", "nodes", "", None, None, None),
            (controller, "update", "leases", "coordination.k8s.io", namespace, None, "someone-elses-lease"),
            (controller, "update", "leases", "coordination.k8s.io", "kube-system", None, "multus-eni-controller"),
            (controller, "patch", "pods", "", "default", None, None),
            (agent, "get", "secrets", "", namespace, None, None),
            (agent, "patch", "nodeenis", "networking.k8s.aws", None, None, None),
            (agent, "list", "pods", "", None, None, None),
        ]
        for user, verb, resource, group, ns, sub, name in forbidden:
            assert not can(client, user, verb, resource, group=group, namespace=ns, subresource=sub, name=name), (
                f"{user} may {verb} {resource}/{sub or ''} in {ns}: more than it needs")
    finally:
        for obj in reversed(objects):
            if obj.kind in {"ClusterRole", "ClusterRoleBinding"}:
                client.delete(type(obj), obj.metadata.name)
        client.delete(Namespace, namespace)


def test_iam_policy_scopes_every_mutation_to_our_tags() -> None:
    policy = json.loads((CHART.parents[1] / "iam-policy.json").read_text())
    mutating_on_enis = {"ec2:DeleteNetworkInterface", "ec2:DetachNetworkInterface", "ec2:AttachNetworkInterface",
                        "ec2:ModifyNetworkInterfaceAttribute", "ec2:AssignPrivateIpAddresses"}  # fmt: skip
    for statement in policy["Statement"]:
        actions = {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if actions & mutating_on_enis and any("network-interface" in r for r in resources):
            assert "Condition" in statement, f"{statement['Sid']}: ENI mutations must be conditioned on tags"
        if "ec2:CreateTags" in actions or "ec2:DeleteTags" in actions:
            assert "Condition" in statement, f"{statement['Sid']}: tag writes must be limited"
    assert any(
        s["Action"] == "ec2:CreateNetworkInterface"
        and s["Condition"]["StringEquals"].get("aws:RequestTag/node.k8s.amazonaws.com/no_manage") == "true"
        for s in policy["Statement"] if "Condition" in s
    ), "ENIs may only be created with no_manage=true at create time"


def test_the_publish_sidecar_example_is_accepted_and_its_args_parse(world: WorldInfo) -> None:
    example = CHART.parents[1] / "examples" / "pod-ips-publish.yaml"
    docs = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
    client: Client = world.kube()
    namespace = docs[0]["metadata"]["namespace"]
    client.apply(Namespace.from_dict({"metadata": {"name": namespace}}), field_manager="chart-test")
    try:
        for obj in load_all_yaml(yaml.safe_dump_all(docs)):
            client.apply(obj, field_manager="chart-test", force=True, dry_run=True)
    finally:
        client.delete(Namespace, namespace)
    pod = next(doc for doc in docs if doc["kind"] == "Pod")
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "pod-ips-publish")
    build_parser().parse_args(sidecar["args"])
