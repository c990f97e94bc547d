"""The node side of a world: per node a namespace with eth0, IMDS and the apiserver forwarded in.

Each node namespace looks like an EC2 instance to software running inside it: `eth0` with the
primary ENI's MAC and address, IMDSv2 at 169.254.169.254, and the apiserver at the same
127.0.0.1:<port> as on the host. The hypervisor plugs and unplugs further ENIs as the emulator
attaches and detaches them.
"""

from __future__ import annotations

import ipaddress
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multus_eni.sandbox import netns
from multus_eni.sandbox.forward import Forwarder
from multus_eni.sandbox.hypervisor import Hypervisor
from multus_eni.sandbox.imds import Ec2MetadataSource, ImdsServer

log = logging.getLogger(__name__)

# Namespaces and veths are created with `ip`; a few at a time keeps startup short on 2 cores.
PARALLEL_SETUP = 4


class NodeSide:
    def __init__(self, world_id: str, emulator: Any, apiserver_port: int, nodes: list[dict[str, Any]],
                 subnet_cidrs: dict[str, str]) -> None:
        self.world_id = world_id
        self.emulator = emulator
        self.apiserver_port = apiserver_port
        self.nodes = nodes
        self.subnet_cidrs = subnet_cidrs  # primary subnet id -> CIDR (for eth0's prefix length)
        self.hypervisor = Hypervisor({n["instance_id"]: n["netns"] for n in nodes}, vpc_netns=f"{world_id}-vpc")
        self.metadata = Ec2MetadataSource(emulator.client(), emulator.region)
        self._servers: list[ImdsServer | Forwarder] = []

    def start(self) -> None:
        netns.cleanup(self.world_id)  # leftovers of a crashed world with the same id
        self.hypervisor.start()
        with ThreadPoolExecutor(PARALLEL_SETUP) as pool:
            list(pool.map(self._start_node, self.nodes))
        # Subscribe last: every node namespace exists before the first hot-plug can arrive.
        self.emulator.subscribe(self.hypervisor.handle)

    def _start_node(self, node: dict[str, Any]) -> None:
        netns.create(node["netns"])
        prefix = ipaddress.ip_network(self.subnet_cidrs[node["primary_subnet"]]).prefixlen
        # The primary ENI was attached at launch: plugged UP with its address, as the AMI's DHCP would.
        self.hypervisor.plug(
            node["instance_id"], node["primary_eni"], 0, node["primary_mac"], up=True,
            addresses=(f"{node['primary_ip']}/{prefix}",),
        )  # fmt: skip
        imds = ImdsServer(node["netns"], node["instance_id"], self.metadata).start()
        forwarder = Forwarder(node["netns"], self.apiserver_port).start()
        self._servers += [imds, forwarder]

    def stop(self) -> None:
        for server in self._servers:
            try:
                server.stop()
            except Exception:
                log.exception("stopping %s failed", server)
        self._servers.clear()
        self.hypervisor.stop()
        netns.cleanup(self.world_id)
