"""`multus-eni demo`: the whole flow in a local world, ending in a readable table.

1. bring up a world (real apiserver + etcd, EC2 emulator with AWS's rules, node namespaces);
2. install the NodeENI CRD and apply a NodeENI written as for aws-multi-eni-controller;
3. label nodes so they match; run the controller (when present) until ENIs are attached;
4. print nodes, AZs, instances, ENIs and the interfaces inside each node namespace;
5. tear the world down (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from multus_eni.sandbox.cli import DEFAULT_DIR, add_world_arguments, start_world, stop_world
from multus_eni.sandbox.info import WorldInfo

DEMO_LABEL = ("ng", "multi-eni")
DEMO_NODEENI = "multus-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run the whole flow in a local world and print the result")
    add_world_arguments(demo)
    demo.add_argument("--keep", action="store_true", help="leave the world running afterwards")
    demo.set_defaults(func=run, dir=DEFAULT_DIR)


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def example_nodeeni(world: WorldInfo) -> dict[str, Any]:
    """A NodeENI in the reference's own format: one subnet per AZ by Name tag, SG by name, MTU 9001."""
    subnet_names = [s.name for s in world.subnets if s.role == "spare" and s.name.endswith("-1")]
    return {
        "apiVersion": "networking.k8s.aws/v1alpha1",
        "kind": "NodeENI",
        "metadata": {"name": DEMO_NODEENI},
        "spec": {
            "nodeSelector": {DEMO_LABEL[0]: DEMO_LABEL[1]},
            "subnetNames": subnet_names,
            "securityGroupNames": [world.security_groups[0]["name"]],
            "deviceIndex": 2,
            "mtu": 9001,
            "deleteOnTermination": True,
            "description": "Multus ENI (multus-eni demo)",
        },
    }


def apply_example(world: WorldInfo) -> None:
    from lightkube.generic_resource import create_global_resource

    from multus_eni.api.crd import nodeeni_crd
    from multus_eni.kube.client import apply_crd

    client = world.kube()
    apply_crd(client, nodeeni_crd())
    nodeeni = create_global_resource("networking.k8s.aws", "v1alpha1", "NodeENI", "nodeenis")
    manifest = example_nodeeni(world)
    client.apply(nodeeni(**manifest), field_manager="multus-eni-demo", force=True)
    print(json.dumps(manifest["spec"], indent=2))


def label_nodes(world: WorldInfo) -> list[str]:
    from lightkube.resources.core_v1 import Node

    client = world.kube()
    names = [node.name for node in world.nodes]
    for name in names:
        client.patch(Node, name, {"metadata": {"labels": {DEMO_LABEL[0]: DEMO_LABEL[1]}}})
    return names


def interfaces_in(netns: str) -> list[dict[str, Any]]:
    if not netns:
        return []
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return []
    return [link for link in json.loads(out.stdout or "[]") if link.get("ifname") != "lo"]


def enis_by_instance(world: WorldInfo) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for page in world.ec2().get_paginator("describe_network_interfaces").paginate():
        for eni in page["NetworkInterfaces"]:
            attachment = eni.get("Attachment") or {}
            if instance := attachment.get("InstanceId"):
                result.setdefault(instance, []).append(eni)
    return result


def print_table(world: WorldInfo) -> None:
    enis = enis_by_instance(world)
    subnet_names = {s.id: s.name for s in world.subnets}
    header = f"{'NODE':<14} {'AZ':<11} {'INSTANCE':<20} {'DEV':>3} {'ENI':<22} {'SUBNET':<18} {'INTERFACE (netns)'}"
    print(header)
    print("-" * len(header))
    for node in world.nodes:
        links = {link.get("address"): link for link in interfaces_in(node.netns)}
        attached = sorted(enis.get(node.instance_id, []), key=lambda e: e["Attachment"]["DeviceIndex"])
        for eni in attached:
            link = links.get(eni["MacAddress"])
            iface = "-" if link is None else f"{link['ifname']} {link.get('operstate', '?')} mtu {link.get('mtu')}"
            print(
                f"{node.name:<14} {node.az:<11} {node.instance_id:<20} {eni['Attachment']['DeviceIndex']:>3} "
                f"{eni['NetworkInterfaceId']:<22} {subnet_names.get(eni['SubnetId'], eni['SubnetId']):<18} {iface}"
            )


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    step(f"starting the local world ({args.nodes} nodes in {args.azs} AZs) in {Path(args.dir).resolve()}")
    directory = start_world(args, progress=lambda line: print(f"    {line}", flush=True))
    world = WorldInfo.load(directory)
    try:
        step("installing the NodeENI CRD and applying an aws-multi-eni-controller style NodeENI")
        apply_example(world)
        step(f"labelling nodes {DEMO_LABEL[0]}={DEMO_LABEL[1]}")
        print("    " + ", ".join(label_nodes(world)))
        step("nodes, ENIs and interfaces inside each node namespace")
        print_table(world)
        step(f"done in {time.monotonic() - started:.1f}s")
    finally:
        if args.keep:
            print(f"world left running: KUBECONFIG={world.kubeconfig}; stop it with "
                  f"`multus-eni sandbox down --dir {directory}`")
        else:
            step("tearing the world down")
            stop_world(directory)
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace()))
