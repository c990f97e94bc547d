"""`multus-eni doctor`: read the cluster and EC2 (read-only), explain what will make Multus pods fail.

Reads NetworkAttachmentDefinitions, pods (their network-status), nodes (the agent's interface
report), NodeENIs, then from EC2 the ENIs and reservations of the subnets involved; the rules
(plan/doctor_rules.py) do the rest. Exit code: 0 when no finding is an error, 1 when one is,
2 when the cluster or EC2 could not be read. `--namespace`, `--node-selector` and
`--nodeeni-selector` narrow what is checked (one team's part of a big cluster).

EC2 calls: a handful of filtered Describes for the whole cluster (subnets, our ENIs, the ENIs
of the subnets involved) and one GetSubnetCidrReservations per subnet involved. Never a write.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from multus_eni.agent.annotations import REPORT_ANNOTATION, parse_report
from multus_eni.api.nodeeni import NodeENI
from multus_eni.plan.doctor import (
    ERROR,
    NAD,
    Finding,
    Interface,
    Node,
    Pod,
    PodNetwork,
    Snapshot,
    diagnose,
    parse_requested,
    summary,
)
from multus_eni.plan.doctor_nad import NADError, parse_nad
from multus_eni.plan.model import Subnet
from multus_eni.plan.netstatus import PUBLISHED, pod_view
from multus_eni.plan.reservations import subnet_references

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="explain mismatches between NADs, ENIs, subnets and nodes (read-only)",
        description="Check NetworkAttachmentDefinitions, pods, nodes, NodeENIs and EC2 for what makes Multus "
        "pods on ENIs fail. Exit 0: no errors; 1: errors found; 2: could not read the cluster or EC2.",
    )
    env = os.environ.get
    p.add_argument(
        "--kubeconfig", type=Path, default=None, help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    p.add_argument("--region", default=env("AWS_REGION") or env("AWS_DEFAULT_REGION"), help="AWS region")
    p.add_argument("--ec2-endpoint", default=env("MULTUS_ENI_EC2_ENDPOINT"), help="EC2 endpoint URL override")
    p.add_argument(
        "--cluster-name", default=env("CLUSTER_NAME"), help="the controller's --cluster-name (ENI ownership)"
    )
    p.add_argument("--json", action="store_true", help="print findings as JSON")
    p.add_argument(
        "--namespace", action="append", default=[], help="check only NADs and pods of this namespace (repeatable)"
    )
    p.add_argument("--node-selector", default="", help="check only nodes with these labels (k=v,k2=v2)")
    p.add_argument("--nodeeni-selector", default="", help="check only NodeENIs with these labels (k=v,k2=v2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [f for f, v in (("--region", args.region), ("--cluster-name", args.cluster_name)) if not v]
    if missing:
        print(f"multus-eni doctor: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        snapshot, checked = read(args)
    except Exception as err:  # any failure to read is reported the same way
        print(f"multus-eni doctor: cannot read the cluster or EC2: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    findings = diagnose(snapshot)
    if args.json:
        json.dump({"findings": [f.to_dict() for f in findings], "summary": summary(findings), "checked": checked},
                  sys.stdout, indent=2)  # fmt: skip
        sys.stdout.write("\n")
    else:
        print_table(findings, checked, sys.stdout)
    return 1 if any(f.severity == ERROR for f in findings) else 0


# -- reading -------------------------------------------------------------------------------------


def _selector(text: str) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"selector {text!r}: expected k=v[,k2=v2]")
        out[key.strip()] = value.strip()
    return out


def read(args: argparse.Namespace) -> tuple[Snapshot, dict[str, int]]:
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import Node as NodeResource
    from lightkube.resources.core_v1 import Pod as PodResource

    from multus_eni.aws.ec2 import EC2Port
    from multus_eni.kube.client import NetworkAttachmentDefinition, client_from_kubeconfig
    from multus_eni.kube.client import NodeENI as NodeENIResource
    from multus_eni.kube.nodes import labels_of, node_zone, provider_instance_id

    client = client_from_kubeconfig(args.kubeconfig) if args.kubeconfig else Client(KubeConfig.from_env())
    namespaces = list(dict.fromkeys(args.namespace)) or ["*"]

    nad_objects = [o.to_dict() for ns in namespaces for o in client.list(NetworkAttachmentDefinition, namespace=ns)]
    pod_objects = [o.to_dict() for ns in namespaces for o in client.list(PodResource, namespace=ns)]
    everyone = pod_objects if namespaces == ["*"] else [o.to_dict() for o in client.list(PodResource, namespace="*")]
    node_objects = [o.to_dict() for o in client.list(NodeResource, labels=_selector(args.node_selector))]
    nodeeni_objects = [o.to_dict() for o in client.list(NodeENIResource, labels=_selector(args.nodeeni_selector))]

    nads = [NAD(o["metadata"]["namespace"], o["metadata"]["name"], (o.get("spec") or {}).get("config"))
            for o in nad_objects]  # fmt: skip
    pods = [_pod(o) for o in pod_objects]
    in_scope = {(p.namespace, p.name) for p in pods}
    other_ips = frozenset(
        ip
        for o in everyone
        for view in [pod_view(o)]
        for entry in view.entries
        if (view.namespace, view.name) not in in_scope or entry.source == PUBLISHED
        for ip in entry.ips
    )
    nodes = [
        Node(o["metadata"]["name"], labels_of(o), provider_instance_id(o), node_zone(o), _interfaces(o))
        for o in node_objects
    ]
    nodeenis = [NodeENI.from_dict(o) for o in nodeeni_objects]

    port = EC2Port(args.region, args.ec2_endpoint, max_attempts=3)
    enis = {e.id: e for e in port.describe_our_enis(args.cluster_name)}
    reported = {i.eni_id for n in nodes for i in n.interfaces or () if i.eni_id and i.eni_id not in enis}
    enis.update({e.id: e for e in port.describe_enis(sorted(reported))})
    ids, names = subnet_references(nodeenis)
    for n in nodeenis:
        ids.update(n.spec.candidate_subnet_ids)
        names.update(n.spec.candidate_subnet_names)
    subnets = {s.id: s for s in port.describe_subnets(ids | {e.subnet_id for e in enis.values()}, names)}
    vpcs = {s.vpc_id for s in subnets.values() if s.vpc_id}
    if vpcs:
        subnets.update({s.id: s for s in port.describe_vpc_subnets(vpcs)})
    involved = set(ids) | {e.subnet_id for e in enis.values()} | {s.id for s in subnets.values() if s.name in names}
    involved |= _subnets_holding_pools(nads, subnets.values())
    for e in port.describe_enis_in_subnets(sorted(involved)):
        enis.setdefault(e.id, e)
    reservations = port.get_cidr_reservations(sorted(involved))

    snapshot = Snapshot(
        cluster=args.cluster_name,
        nads=nads,
        pods=pods,
        nodes=nodes,
        nodeenis=nodeenis,
        enis=sorted(enis.values(), key=lambda e: e.id),
        subnets=sorted(subnets.values(), key=lambda s: s.id),
        reservations=reservations,
        other_pod_ips=other_ips,
    )
    checked = {"nads": len(nads), "pods": len(pods), "nodes": len(nodes), "nodeenis": len(nodeenis),
               "enis": len(enis), "subnets": len(involved), "reservations": len(reservations)}  # fmt: skip
    return snapshot, checked


def _pod(obj: dict[str, Any]) -> Pod:
    view = pod_view(obj)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    networks = tuple(
        PodNetwork(e.network or "", e.interface, e.ips, e.mac, e.default) for e in view.entries if e.source != PUBLISHED
    )
    requested = parse_requested(annotations.get(NETWORKS_ANNOTATION), view.namespace)
    return Pod(view.namespace, view.name, view.node, requested, networks, view.phase)


def _interfaces(node: dict[str, Any]) -> tuple[Interface, ...] | None:
    reports = parse_report(((node.get("metadata") or {}).get("annotations") or {}).get(REPORT_ANNOTATION))
    if reports is None:
        return None
    return tuple(Interface(r.mac, r.name, r.eni_id, r.up, r.mtu) for r in reports)


def _subnets_holding_pools(nads: Sequence[NAD], subnets: Iterable[Subnet]) -> set[str]:
    """Subnets containing any NAD's IPAM addresses (their ENIs' addresses may clash with pods)."""
    nets = [(s.id, ipaddress.ip_network(s.cidr)) for s in subnets]
    out: set[str] = set()
    for nad in nads:
        try:
            conf = parse_nad(nad.namespace, nad.name, nad.config)
        except NADError:
            continue
        for pool in conf.pools:
            out.update(sid for sid, net in nets if pool.first_address in net or pool.last_address in net)
    return out


# -- printing ------------------------------------------------------------------------------------


def print_table(findings: Sequence[Finding], checked: dict[str, int], out: TextIO) -> None:
    what = ", ".join(f"{v} {k}" for k, v in checked.items())
    if not findings:
        out.write(f"no problems found (checked {what})\n")
        return
    code_width = max(len("CODE"), *(len(f.code) for f in findings))
    out.write(f"{'SEVERITY':<9} {'CODE':<{code_width}} OBJECT\n")
    for f in findings:
        out.write(f"{f.severity:<9} {f.code:<{code_width}} {f.object}\n")
        out.write(f"{'':<10}{f.message}\n")
        out.write(f"{'':<10}fix: {f.fix}\n")
    counts = summary(findings)
    out.write(f"\n{counts['errors']} error(s), {counts['warnings']} warning(s) (checked {what})\n")
