"""An IMDSv2-compatible instance metadata endpoint per node, served inside the node's namespace.

As on EC2 it answers at http://169.254.169.254/ (the address lives on the namespace's `lo`),
requires a session token (`PUT /latest/api/token`), and reflects the instance's network
interfaces as the EC2 emulator sees them right now: it asks the emulator through boto3, with a
short cache, so an ENI attached a moment ago shows up under network/interfaces/macs/.

Only the paths the product and its tools read are served; see `metadata_tree`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from multus_eni.sandbox import netns

log = logging.getLogger(__name__)

IMDS_ADDRESS = "169.254.169.254"
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600
# Marks the EC2 calls IMDS makes, so the emulator can keep them out of call counts and API
# throttling: the real IMDS is served by the hypervisor and costs no EC2 API quota.
SANDBOX_CALLER_HEADER = "X-Multus-Eni-Sandbox-Caller"
SANDBOX_CALLER = "imds"
# The attachment states in which the device is present on the instance, as the guest sees it.
VISIBLE_ATTACHMENT_STATES = {"attached", "detaching"}

Tree = dict[str, Any]  # nested dicts; leaves are str


@dataclass(frozen=True)
class InterfaceMeta:
    mac: str
    device_number: int
    interface_id: str
    subnet_id: str
    subnet_cidr: str
    vpc_id: str
    vpc_cidr: str
    local_ipv4s: list[str]  # primary first
    security_group_ids: list[str]
    security_group_names: list[str]
    owner_id: str
    ipv6s: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InstanceMeta:
    instance_id: str
    instance_type: str
    availability_zone: str
    region: str
    ami_id: str
    interfaces: list[InterfaceMeta]  # sorted by device number

    @property
    def primary(self) -> InterfaceMeta | None:
        return next((i for i in self.interfaces if i.device_number == 0), None)


def _hostname(ip: str, region: str) -> str:
    suffix = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    return f"ip-{ip.replace('.', '-')}.{suffix}"


def metadata_tree(meta: InstanceMeta) -> Tree:
    """The `/latest/meta-data/` tree of an instance, as EC2 lays it out."""
    macs: Tree = {}
    for eni in meta.interfaces:
        entry: Tree = {
            "device-number": str(eni.device_number),
            "interface-id": eni.interface_id,
            "mac": eni.mac,
            "owner-id": eni.owner_id,
            "subnet-id": eni.subnet_id,
            "subnet-ipv4-cidr-block": eni.subnet_cidr,
            "vpc-id": eni.vpc_id,
            "vpc-ipv4-cidr-block": eni.vpc_cidr,
            "vpc-ipv4-cidr-blocks": eni.vpc_cidr,
            "local-ipv4s": "\n".join(eni.local_ipv4s),
            "security-group-ids": "\n".join(eni.security_group_ids),
            "security-groups": "\n".join(eni.security_group_names),
        }
        if eni.local_ipv4s:
            entry["local-hostname"] = _hostname(eni.local_ipv4s[0], meta.region)
        if eni.ipv6s:
            entry["ipv6s"] = "\n".join(eni.ipv6s)
        macs[eni.mac] = entry
    tree: Tree = {
        "ami-id": meta.ami_id,
        "instance-id": meta.instance_id,
        "instance-type": meta.instance_type,
        "placement": {"availability-zone": meta.availability_zone, "region": meta.region},
        "network": {"interfaces": {"macs": macs}},
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }
    if (primary := meta.primary) is not None:
        tree["mac"] = primary.mac
        if primary.local_ipv4s:
            tree["local-ipv4"] = primary.local_ipv4s[0]
            tree["local-hostname"] = tree["hostname"] = _hostname(primary.local_ipv4s[0], meta.region)
    return tree


def resolve(tree: Tree, path: str) -> str | None:
    """The body EC2 returns for `path` below meta-data/: a leaf's text, or a directory listing
    (one entry a line, sub-directories with a trailing slash); None when there is no such path."""
    node: Any = tree
    for part in (p for p in path.split("/") if p):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
    return node


class Ec2MetadataSource:
    """Reads an instance's metadata from the EC2 emulator, caching each answer briefly.

    `ec2` is a boto3 EC2 client of its own (thread-safe for calls; its requests get tagged with
    SANDBOX_CALLER_HEADER); one source can serve many nodes.
    """

    def __init__(self, ec2: Any, region: str, *, ttl: float = 0.25) -> None:
        self.ec2 = ec2
        ec2.meta.events.register("before-sign.ec2", _tag_request)
        self.region = region
        self.ttl = ttl
        self._cache: dict[str, tuple[float, InstanceMeta]] = {}
        self._static: dict[str, dict[str, Any]] = {}  # subnets, VPCs, groups: their fields here never change
        self._lock = threading.Lock()

    def get(self, instance_id: str) -> InstanceMeta:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(instance_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        meta = self._fetch(instance_id)
        with self._lock:
            self._cache[instance_id] = (now, meta)
        return meta

    def _fetch(self, instance_id: str) -> InstanceMeta:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance = reservations[0]["Instances"][0]
        enis = self.ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
        )["NetworkInterfaces"]
        interfaces = []
        for eni in enis:
            attachment = eni.get("Attachment") or {}
            if attachment.get("Status", "attached") not in VISIBLE_ATTACHMENT_STATES:
                continue
            private = sorted(eni.get("PrivateIpAddresses", []), key=lambda a: not a.get("Primary"))
            groups = eni.get("Groups", [])
            interfaces.append(
                InterfaceMeta(
                    mac=eni["MacAddress"].lower(),
                    device_number=int(attachment.get("DeviceIndex", 0)),
                    interface_id=eni["NetworkInterfaceId"],
                    subnet_id=eni["SubnetId"],
                    subnet_cidr=self._subnet(eni["SubnetId"])["CidrBlock"],
                    vpc_id=eni["VpcId"],
                    vpc_cidr=self._vpc(eni["VpcId"])["CidrBlock"],
                    local_ipv4s=[a["PrivateIpAddress"] for a in private],
                    security_group_ids=[g["GroupId"] for g in groups],
                    security_group_names=[g["GroupName"] for g in groups],
                    owner_id=eni.get("OwnerId", ""),
                    ipv6s=[a["Ipv6Address"] for a in eni.get("Ipv6Addresses", [])],
                )
            )
        interfaces.sort(key=lambda i: i.device_number)
        return InstanceMeta(
            instance_id=instance_id,
            instance_type=instance["InstanceType"],
            availability_zone=instance["Placement"]["AvailabilityZone"],
            region=self.region,
            ami_id=instance.get("ImageId", ""),
            interfaces=interfaces,
        )

    def _subnet(self, subnet_id: str) -> dict[str, Any]:
        key = f"subnet/{subnet_id}"
        if key not in self._static:
            self._static[key] = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
        return self._static[key]

    def _vpc(self, vpc_id: str) -> dict[str, Any]:
        key = f"vpc/{vpc_id}"
        if key not in self._static:
            self._static[key] = self.ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
        return self._static[key]


def _tag_request(request: Any, **_: Any) -> None:
    request.headers[SANDBOX_CALLER_HEADER] = SANDBOX_CALLER


class TokenStore:
    """IMDSv2 session tokens with their expiry."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(40)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()


class ImdsServer:
    """Serves one instance's metadata at 169.254.169.254:80 inside namespace `netns_name`."""

    def __init__(
        self,
        netns_name: str,
        instance_id: str,
        source: Ec2MetadataSource,
        *,
        address: str = IMDS_ADDRESS,
        port: int = 80,
    ) -> None:
        self.netns = netns_name
        self.instance_id = instance_id
        self.source = source
        self.address = address
        self.port = port
        self.tokens = TokenStore()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> ImdsServer:
        netns.add_address(self.netns, f"{self.address}/32", dev="lo")
        sock = netns.listen_in_netns(self.netns, self.address, self.port)
        server = ThreadingHTTPServer((self.address, self.port), _handler_for(self), bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"imds-{self.netns}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(imds: ImdsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "EC2ws"
        sys_version = ""

        def do_PUT(self) -> None:
            self._drain()
            if self.path.split("?")[0] != TOKEN_PATH:
                return self._reply(HTTPStatus.NOT_FOUND, "Not Found")
            # EC2 refuses token requests that went through a proxy (X-Forwarded-For).
            if self.headers.get("X-Forwarded-For"):
                return self._reply(HTTPStatus.FORBIDDEN, "Forbidden")
            try:
                ttl = int(self.headers.get(TTL_HEADER, ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= MAX_TOKEN_TTL:
                return self._reply(HTTPStatus.BAD_REQUEST, "Bad Request")
            self._reply(HTTPStatus.OK, imds.tokens.issue(ttl), {TTL_HEADER: str(ttl)})

        def do_GET(self) -> None:
            self._get(send_body=True)

        def do_HEAD(self) -> None:
            self._get(send_body=False)

        def _get(self, send_body: bool) -> None:
            if not imds.tokens.valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(HTTPStatus.UNAUTHORIZED, "Unauthorized", send_body=send_body)
            path = self.path.split("?")[0]
            prefix = "/latest/meta-data"
            if path == "/latest" or path == "/latest/":
                return self._reply(HTTPStatus.OK, "dynamic\nmeta-data\nuser-data", send_body=send_body)
            if path != prefix and not path.startswith(prefix + "/"):
                return self._reply(HTTPStatus.NOT_FOUND, "Not Found", send_body=send_body)
            try:
                meta = imds.source.get(imds.instance_id)
            except Exception:
                log.exception("imds %s: reading instance %s", imds.netns, imds.instance_id)
                return self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error", send_body=send_body)
            body = resolve(metadata_tree(meta), path[len(prefix) :])
            if body is None:
                return self._reply(HTTPStatus.NOT_FOUND, "Not Found", send_body=send_body)
            self._reply(HTTPStatus.OK, body, send_body=send_body)

        def _drain(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)

        def _reply(
            self, status: HTTPStatus, body: str, headers: dict[str, str] | None = None, send_body: bool = True
        ) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("imds %s: " + format, imds.netns, *args)

    return Handler


def probe(netns_name: str, timeout: float = 2.0) -> bool:
    """True when something accepts connections at the IMDS address inside the namespace."""
    try:
        netns.connect_in_netns(netns_name, IMDS_ADDRESS, 80, timeout=timeout).close()
        return True
    except OSError:  # TimeoutError included
        return False
