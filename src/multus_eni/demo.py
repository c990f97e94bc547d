"""`multus-eni demo`: the whole flow in a local world, ending in a readable table.

1. bring up a world (real apiserver + etcd, EC2 emulator with AWS's rules, node namespaces);
2. install the NodeENI CRD and apply a NodeENI written as for aws-multi-eni-controller;
3. start the node agents (inside each node namespace) and the controller, as real processes;
4. label nodes so they match, and wait until every ENI is attached and configured on its node;
5. print nodes, AZs, instances, ENIs and the interfaces inside each node namespace;
6. run a pod per node through real Multus on its ENI and show its IP registered on that ENI;
7. delete the NodeENI and show every ENI detached and deleted;
8. claim pre-created fixed-IP ENIs (one per AZ), then fail a holder node and watch another take over;
9. tear the world down (unless --keep).
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
from multus_eni.sandbox.components import AgentProcess, ControllerProcess
from multus_eni.sandbox.info import WorldInfo

DEMO_LABEL = ("ng", "multi-eni")
DEMO_NODEENI = "multus-demo"
DEMO_CLUSTER = "demo"
WAIT_SECONDS = 120


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
            "interfaceName": "multus",
            "podIPRegistration": True,
        },
    }


def apply_example(world: WorldInfo) -> None:
    from multus_eni.api.crd import nodeeni_crd
    from multus_eni.kube.client import NodeENI, apply_crd

    client = world.kube()
    apply_crd(client, nodeeni_crd())
    manifest = example_nodeeni(world)
    client.apply(NodeENI.from_dict(manifest), field_manager="multus-eni-demo", force=True)
    print(json.dumps(manifest["spec"], indent=2))


def nodeeni_status(world: WorldInfo) -> dict[str, Any] | None:
    from lightkube import ApiError

    from multus_eni.kube.client import NodeENI

    try:
        return world.kube().get(NodeENI, DEMO_NODEENI).to_dict()
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def wait_until(condition, timeout: float, what: str, progress=None) -> float:
    """Poll `condition` until true; returns the seconds it took. `progress()` gives a line to show."""
    started = time.monotonic()
    last = ""
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"demo: timed out after {timeout:.0f}s waiting for {what}")
        if progress and (line := progress()) != last:
            print(f"    {line}", flush=True)
            last = line
        time.sleep(0.05)
    return time.monotonic() - started


def counts(world: WorldInfo) -> tuple[int, int, int]:
    status = (nodeeni_status(world) or {}).get("status") or {}
    return status.get("desired", 0), status.get("attached", 0), status.get("ready", 0)


def our_enis(world: WorldInfo) -> list[dict[str, Any]]:
    filters = [{"Name": "tag:multus-eni.io/cluster", "Values": [DEMO_CLUSTER]}]
    return world.ec2().describe_network_interfaces(Filters=filters)["NetworkInterfaces"]


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


def secondary_ips(world: WorldInfo) -> dict[str, tuple[str, set[str]]]:
    """Our ENIs' secondary IPv4 addresses: ENI id -> (node tag, addresses)."""
    result = {}
    for eni in our_enis(world):
        tags = {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}
        secondaries = {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"] if not a.get("Primary")}
        result[eni["NetworkInterfaceId"]] = (tags.get("multus-eni.io/node", ""), secondaries)
    return result


def show_pod_ips(world: WorldInfo, state_dir: Path) -> None:
    from multus_eni import demo_pods

    client = world.kube()
    subnet_of_node = {n.name: next(s.cidr for s in world.subnets_in(n.az) if s.name.endswith("-1"))
                      for n in world.nodes}  # fmt: skip
    step("one pod per node through real Multus (host-device on `multus`, static IP); the controller "
         "registers each pod IP as a secondary IP of its ENI")
    pods = demo_pods.start_pods(world, client, state_dir, subnet_of_node)
    wanted = {pod.address for pod in pods}
    took = wait_until(lambda: wanted <= set().union(*(ips for _, ips in secondary_ips(world).values())),
                      WAIT_SECONDS, "every pod IP registered on its ENI")  # fmt: skip
    print(f"    network-status -> last pod IP registered: {took:.2f}s after the last pod started")
    registered = secondary_ips(world)
    header = f"{'POD':<22} {'NODE':<14} {'IFACE':<6} {'IP (network-status)':<20} {'MAC':<18} {'ENI (secondary IP)'}"
    print(header)
    print("-" * len(header))
    for pod in pods:
        entry = demo_pods.network_status_entry(client, pod)
        enis = [eni for eni, (_, ips) in registered.items() if pod.address in ips]
        print(f"{demo_pods.NAMESPACE + '/' + pod.name:<22} {pod.node.name:<14} {entry.get('interface', '-'):<6} "
              f"{','.join(entry.get('ips', [])):<20} {entry.get('mac', '-'):<18} {','.join(enis) or 'NOT REGISTERED'}")
    step("deleting the pods: their IPs are unassigned from the ENIs")
    demo_pods.stop_pods(client, pods)
    took = wait_until(lambda: not wanted & set().union(*(ips for _, ips in secondary_ips(world).values())),
                      WAIT_SECONDS, "pod IPs unassigned")  # fmt: skip
    print(f"    unassigned {took:.1f}s after the pods were deleted (incl. a 3 s grace period for a pod re-created "
          f"under the same name)")


def print_claims(world: WorldInfo, pool: dict[str, dict[str, str]]) -> None:
    from multus_eni import demo_claim

    held = demo_claim.holders(world, pool)
    labelled, tagged = demo_claim.labelled_nodes(world), demo_claim.tagged_instances(world)
    by_instance = {node.instance_id: node for node in world.nodes}
    macs = {e["NetworkInterfaceId"]: e["MacAddress"] for e in world.ec2().describe_network_interfaces(
        NetworkInterfaceIds=[entry["id"] for entry in pool.values()])["NetworkInterfaces"]}  # fmt: skip
    header = f"{'AZ':<11} {'FIXED IP':<12} {'ENI':<22} {'HOLDER':<14} {'LABEL':<6} {'INST TAG':<9} {'INTERFACE'}"
    print(header)
    print("-" * len(header))
    for az, entry in sorted(pool.items()):
        node = by_instance.get(held[az] or "")
        link = next((link for link in interfaces_in(node.netns) if link.get("address") == macs[entry["id"]]), None) \
            if node else None
        iface = "-" if link is None else f"{link['ifname']} {link.get('operstate', '?')} mtu {link.get('mtu')}"
        print(f"{az:<11} {entry['ip']:<12} {entry['id']:<22} {node.name if node else '(free)':<14} "
              f"{'yes' if node and node.name in labelled else '-':<6} "
              f"{'yes' if node and node.instance_id in tagged else '-':<9} {iface}")


def show_claims(world: WorldInfo) -> None:
    from multus_eni import demo_claim

    step("pre-created ENIs with fixed IPs, one per AZ, tagged multus=true,cluster=demo (as a person makes them)")
    pool = demo_claim.create_fixed_ip_enis(world)
    client = world.kube()
    from multus_eni.kube.client import NodeENI

    client.apply(NodeENI.from_dict(demo_claim.claim_manifest(DEMO_LABEL)), field_manager="multus-eni-demo", force=True)
    step(f"NodeENI {demo_claim.NAME} claims them: one node per AZ gets the ENI, a label and an instance tag")
    took = wait_until(lambda: all(demo_claim.holders(world, pool).values())
                      and len(demo_claim.labelled_nodes(world)) == len(pool), WAIT_SECONDS,
                      "a holder per AZ, labelled")  # fmt: skip
    print(f"    claimed and labelled in {took:.1f}s")
    wait_until(lambda: all(i.get("interfaceState") == "up" for i in claim_attachments(world)), WAIT_SECONDS,
               "the claimed interfaces configured")  # fmt: skip
    print_claims(world, pool)
    shared_az = next((az for az in pool if sum(n.az == az for n in world.nodes) > 1), None)
    if shared_az:
        holder_id = demo_claim.holders(world, pool)[shared_az]
        holder = next(n for n in world.nodes if n.instance_id == holder_id)
        step(f"failover: {holder.name} goes away (instance terminated, Node deleted); another node in {shared_az} "
             f"takes the fixed IP {pool[shared_az]['ip']}")
        demo_claim.fail_node(world, holder.name, holder.instance_id)
        def taken_over() -> bool:
            new = demo_claim.holders(world, pool)[shared_az]
            node = next((n for n in world.nodes if n.instance_id == new and new != holder_id), None)
            return node is not None and node.name in demo_claim.labelled_nodes(world)

        took = wait_until(taken_over, WAIT_SECONDS, "another holder, labelled")
        print(f"    taken over in {took:.1f}s")
        print_claims(world, pool)
    step(f"deleting NodeENI {demo_claim.NAME}: the ENIs are released, never deleted (they are the user's)")
    demo_claim.delete(world)
    def statuses() -> list[str]:
        ids = [entry["id"] for entry in pool.values()]
        return [e["Status"] for e in world.ec2().describe_network_interfaces(NetworkInterfaceIds=ids)
                ["NetworkInterfaces"]]  # fmt: skip

    took = wait_until(lambda: set(statuses()) == {"available"} and not demo_claim.labelled_nodes(world),
                      WAIT_SECONDS, "every ENI released")  # fmt: skip
    print(f"    released in {took:.1f}s: {len(statuses())}/{len(pool)} ENIs still exist, available, labels removed")


def claim_attachments(world: WorldInfo) -> list[dict[str, Any]]:
    from lightkube import ApiError

    from multus_eni import demo_claim
    from multus_eni.kube.client import NodeENI

    try:
        obj = world.kube().get(NodeENI, demo_claim.NAME).to_dict()
    except ApiError:
        return []
    return (obj.get("status") or {}).get("attachments") or []


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    step(f"starting the local world ({args.nodes} nodes in {args.azs} AZs) in {Path(args.dir).resolve()}")
    directory = start_world(args, progress=lambda line: print(f"    {line}", flush=True))
    world = WorldInfo.load(directory)
    processes: list[AgentProcess | ControllerProcess] = []
    try:
        step("installing the NodeENI CRD and applying an aws-multi-eni-controller style NodeENI")
        apply_example(world)
        logs = Path(directory) / "logs"
        step(f"starting the node agents (one per node namespace) and the controller (logs in {logs})")
        processes += [AgentProcess(world, node, logs).start() for node in world.nodes]
        # A short pod-IP grace period keeps the demo brisk (default 30 s: room for a StatefulSet pod to return).
        controller = ControllerProcess(world, DEMO_CLUSTER, logs / "controller.log", "--pod-ip-grace-seconds", "3")
        processes.append(controller.start())
        wait_until(controller.leading, 30, "the controller to take the leader Lease")
        step(f"labelling nodes {DEMO_LABEL[0]}={DEMO_LABEL[1]}")
        print("    " + ", ".join(label_nodes(world)))
        took = wait_until(lambda: counts(world)[2] == len(world.nodes) == counts(world)[1], WAIT_SECONDS,
                          "every ENI attached and configured",
                          lambda: "desired {} / attached {} / ready {}".format(*counts(world)))  # fmt: skip
        print(f"    label -> every ENI attached, up, MTU set and renamed on its node: {took:.1f}s")
        step("nodes, ENIs and interfaces inside each node namespace")
        print_table(world)
        show_pod_ips(world, Path(directory) / "kubelet")
        step(f"deleting NodeENI {DEMO_NODEENI}: its ENIs are detached and deleted, then the finalizer lets go")
        from multus_eni.kube.client import NodeENI

        world.kube().delete(NodeENI, DEMO_NODEENI)
        took = wait_until(lambda: nodeeni_status(world) is None and not our_enis(world), WAIT_SECONDS,
                          "the NodeENI and its ENIs to be gone",
                          lambda: f"{len(our_enis(world))} ENIs of cluster {DEMO_CLUSTER!r} left")  # fmt: skip
        print(f"    cleaned up in {took:.1f}s; ENIs left: {len(our_enis(world))}")
        show_claims(world)
        step(f"done in {time.monotonic() - started:.1f}s")
    finally:
        for process in processes:
            process.stop()
        if args.keep:
            print(f"world left running: KUBECONFIG={world.kubeconfig}; stop it with "
                  f"`multus-eni sandbox down --dir {directory}`")
        else:
            step("tearing the world down")
            stop_world(directory)
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace()))
