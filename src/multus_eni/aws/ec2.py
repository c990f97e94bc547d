"""The narrow EC2 port: the only door between multus-eni and the EC2 API.

Around fifteen methods, each returning plain dataclasses from plan/model.py. One boto3
client with botocore's `standard` retries, our client-side token buckets and our metrics
hooked into its event system, so every call is rate-limited and counted in one place.
Every EC2 failure becomes `EC2Error(code, message, operation)`: the planner classifies
failures by code and never sees a botocore exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from multus_eni.aws import metrics
from multus_eni.aws.tags import NAME, cluster_filter
from multus_eni.aws.throttle import Throttler
from multus_eni.plan.model import InstanceLimits, ObservedAttachment, ObservedENI, SecurityGroup, Subnet
from multus_eni.plan.reservations import Reservation

# EC2 accepts at most 200 values per filter.
_FILTER_CHUNK = 200
_PAGE_SIZE = 1000


class EC2Error(Exception):
    """A failed EC2 call. `code` is EC2's error code, or the client exception's name."""

    def __init__(self, code: str, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.code = code
        self.message = message
        self.operation = operation


class EC2Port:
    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        *,
        max_attempts: int = 5,
        throttler: Throttler | None = None,
        session: boto3.session.Session | None = None,
        # EC2 answers in well under a second (the world's emulator in milliseconds): a stalled
        # endpoint must cost a pass seconds per attempt, not botocore's default 60.
        connect_timeout: float = 3,
        read_timeout: float = 10,
        max_pool_connections: int = 32,
    ) -> None:
        # botocore's `max_attempts` counts retries after the first attempt.
        config = Config(
            region_name=region,
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # The executor runs chains in parallel threads sharing this client.
            max_pool_connections=max_pool_connections,
        )
        session = session or boto3.session.Session()
        self.client: Any = session.client("ec2", region_name=region, endpoint_url=endpoint_url, config=config)
        self.throttler = throttler if throttler is not None else Throttler(on_wait=metrics.record_client_wait)
        self.throttler.attach(self.client)
        metrics.attach(self.client)
        self._limits: dict[str, InstanceLimits] = {}
        self._limits_lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------

    def describe_our_enis(self, cluster: str) -> list[ObservedENI]:
        """Every ENI carrying our cluster tag, in as few paginated calls as EC2 allows."""
        return self._describe_enis([cluster_filter(cluster)])

    def describe_enis_by_tags(self, tags: Mapping[str, str]) -> list[ObservedENI]:
        if not tags:
            raise ValueError("refusing an unfiltered DescribeNetworkInterfaces")
        return self._describe_enis([{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()])

    def describe_claimable_enis(self, selectors: Sequence[Mapping[str, str]], marker_key: str) -> list[ObservedENI]:
        """Candidates for every claim selector, and every ENI carrying our claim marker, in ONE
        paginated call: EC2 ORs the values of one filter, never separate filters, so this asks
        for ENIs carrying any of the selectors' keys or the marker key and the caller matches
        exactly. (A marked ENI whose selector tags were changed must still be seen, to release it.)"""
        keys = sorted({k for selector in selectors for k in selector} | {marker_key})
        return self._describe_enis([{"Name": "tag-key", "Values": keys}])

    def describe_instance_tags(self, keys: Iterable[str]) -> dict[str, dict[str, str]]:
        """instance ID -> {key: value} for the instances carrying any of these tag keys (one call)."""
        wanted = sorted(set(keys))
        out: dict[str, dict[str, str]] = {}
        if not wanted:
            return out
        filters = [{"Name": "resource-type", "Values": ["instance"]}, {"Name": "key", "Values": wanted}]
        for page in self._paginate("describe_tags", "DescribeTags", Filters=filters):
            for raw in page.get("Tags", []):
                out.setdefault(raw["ResourceId"], {})[raw["Key"]] = raw.get("Value", "")
        return out

    def describe_enis_on_instances(self, instance_ids: Sequence[str]) -> list[ObservedENI]:
        """Every ENI attached to these instances, ours or not (one call per 200 instances)."""
        out: list[ObservedENI] = []
        for chunk in _chunks(instance_ids):
            out += self._describe_enis([{"Name": "attachment.instance-id", "Values": chunk}])
        return out

    def describe_enis(self, eni_ids: Sequence[str]) -> list[ObservedENI]:
        out: list[ObservedENI] = []
        for chunk in _chunks(eni_ids):
            out += self._describe_enis([{"Name": "network-interface-id", "Values": chunk}])
        return out

    def _describe_enis(self, filters: list[dict[str, Any]]) -> list[ObservedENI]:
        pages = self._paginate("describe_network_interfaces", "DescribeNetworkInterfaces", Filters=filters)
        return [_eni(raw) for page in pages for raw in page.get("NetworkInterfaces", [])]

    def describe_subnets(self, ids: Iterable[str] = (), names: Iterable[str] = ()) -> list[Subnet]:
        """Subnets by ID or Name tag; unknown ones are simply absent (filters, not SubnetIds,
        so one bad ID does not fail the whole call). One call per kind of reference."""
        found: dict[str, Subnet] = {}
        for key, values in (("subnet-id", sorted(set(ids))), ("tag:Name", sorted(set(names)))):
            for chunk in _chunks(values):
                pages = self._paginate("describe_subnets", "DescribeSubnets", Filters=[{"Name": key, "Values": chunk}])
                for page in pages:
                    for raw in page.get("Subnets", []):
                        found[raw["SubnetId"]] = _subnet(raw)
        return list(found.values())

    def describe_security_groups(
        self, ids: Iterable[str] = (), names: Iterable[str] = (), vpc_ids: Iterable[str] = ()
    ) -> list[SecurityGroup]:
        """Groups by ID, or by name (names are unique per VPC only, hence `vpc_ids`)."""
        vpcs = sorted(set(vpc_ids))
        found: dict[str, SecurityGroup] = {}
        queries: list[tuple[str, list[str]]] = [("group-id", sorted(set(ids))), ("group-name", sorted(set(names)))]
        for key, values in queries:
            for chunk in _chunks(values):
                filters: list[dict[str, Any]] = [{"Name": key, "Values": chunk}]
                if vpcs and key == "group-name":
                    filters.append({"Name": "vpc-id", "Values": vpcs})
                pages = self._paginate("describe_security_groups", "DescribeSecurityGroups", Filters=filters)
                for page in pages:
                    for raw in page.get("SecurityGroups", []):
                        found[raw["GroupId"]] = SecurityGroup(
                            id=raw["GroupId"], name=raw.get("GroupName", ""), vpc_id=raw.get("VpcId", "")
                        )
        return list(found.values())

    def instance_type_limits(self, types: Iterable[str]) -> dict[str, InstanceLimits]:
        """Interface and address limits per instance type; asks EC2 once per type ever."""
        wanted = sorted({t for t in types if t})
        with self._limits_lock:
            missing = [t for t in wanted if t not in self._limits]
        if missing:
            fetched = self._fetch_limits(missing)
            with self._limits_lock:
                self._limits.update(fetched)
        with self._limits_lock:
            return {t: self._limits[t] for t in wanted if t in self._limits}

    def _fetch_limits(self, types: list[str]) -> dict[str, InstanceLimits]:
        try:
            answers = [
                raw
                for chunk in _chunks(types, 100)
                for page in self._paginate(
                    "describe_instance_types",
                    "DescribeInstanceTypes",
                    Filters=[{"Name": "instance-type", "Values": chunk}],
                )
                for raw in page.get("InstanceTypes", [])
            ]
        except EC2Error:
            return {}
        out: dict[str, InstanceLimits] = {}
        for raw in answers:
            net = raw.get("NetworkInfo", {})
            out[raw["InstanceType"]] = InstanceLimits(
                max_enis=int(net.get("MaximumNetworkInterfaces", 0)),
                ipv4_per_eni=int(net.get("Ipv4AddressesPerInterface", 0)),
                ipv6_per_eni=int(net.get("Ipv6AddressesPerInterface", 0)),
            )
        return out

    # -- ENI lifecycle -----------------------------------------------------------------

    def create_eni(
        self,
        subnet_id: str,
        sg_ids: Sequence[str],
        description: str,
        tags: Mapping[str, str],
        client_token: str,
        private_ip: str | None = None,
    ) -> ObservedENI:
        params: dict[str, Any] = {
            "SubnetId": subnet_id,
            "Description": description,
            "ClientToken": client_token,
            # Tagged in the same call: an ENI never exists, even briefly, without its owner.
            "TagSpecifications": [{"ResourceType": "network-interface", "Tags": _tag_list(tags)}],
        }
        if sg_ids:
            params["Groups"] = list(sg_ids)
        if private_ip:
            params["PrivateIpAddress"] = private_ip
        answer = self._call("create_network_interface", "CreateNetworkInterface", **params)
        return _eni(answer["NetworkInterface"])

    def attach_eni(self, eni_id: str, instance_id: str, device_index: int) -> str:
        answer = self._call(
            "attach_network_interface",
            "AttachNetworkInterface",
            NetworkInterfaceId=eni_id,
            InstanceId=instance_id,
            DeviceIndex=device_index,
            # Explicit: on multi-card instances an omitted card index has been reported to
            # fail with a false "device index in use".
            NetworkCardIndex=0,
        )
        return str(answer["AttachmentId"])

    def set_delete_on_termination(self, eni_id: str, attachment_id: str, value: bool) -> None:
        self._call(
            "modify_network_interface_attribute",
            "ModifyNetworkInterfaceAttribute",
            NetworkInterfaceId=eni_id,
            Attachment={"AttachmentId": attachment_id, "DeleteOnTermination": value},
        )

    def detach_eni(self, attachment_id: str, force: bool = False) -> None:
        self._call("detach_network_interface", "DetachNetworkInterface", AttachmentId=attachment_id, Force=force)

    def delete_eni(self, eni_id: str) -> None:
        self._call("delete_network_interface", "DeleteNetworkInterface", NetworkInterfaceId=eni_id)

    # -- addresses and tags ------------------------------------------------------------

    def assign_private_ips(self, eni_id: str, ips: Sequence[str], allow_reassignment: bool = True) -> None:
        self._call(
            "assign_private_ip_addresses",
            "AssignPrivateIpAddresses",
            NetworkInterfaceId=eni_id,
            PrivateIpAddresses=list(ips),
            AllowReassignment=allow_reassignment,
        )

    def unassign_private_ips(self, eni_id: str, ips: Sequence[str]) -> None:
        self._call(
            "unassign_private_ip_addresses",
            "UnassignPrivateIpAddresses",
            NetworkInterfaceId=eni_id,
            PrivateIpAddresses=list(ips),
        )

    def assign_ipv6(self, eni_id: str, ips: Sequence[str]) -> None:
        self._call("assign_ipv6_addresses", "AssignIpv6Addresses", NetworkInterfaceId=eni_id, Ipv6Addresses=list(ips))

    def unassign_ipv6(self, eni_id: str, ips: Sequence[str]) -> None:
        self._call(
            "unassign_ipv6_addresses", "UnassignIpv6Addresses", NetworkInterfaceId=eni_id, Ipv6Addresses=list(ips)
        )

    def create_tags(self, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self._call("create_tags", "CreateTags", Resources=list(resource_ids), Tags=_tag_list(tags))

    def delete_tags(self, resource_ids: Sequence[str], keys: Sequence[str]) -> None:
        self._call("delete_tags", "DeleteTags", Resources=list(resource_ids), Tags=[{"Key": k} for k in keys])

    def delete_tag_values(self, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        """DeleteTags naming the values: EC2 removes a tag only if it still has that value."""
        self._call("delete_tags", "DeleteTags", Resources=list(resource_ids), Tags=_tag_list(tags))

    # -- subnets: pod-range reservations and the addresses in use ----------------------

    def get_cidr_reservations(self, subnet_ids: Iterable[str]) -> list[Reservation]:
        """Every reservation of these subnets (EC2 takes one subnet per call); gone subnets are skipped."""
        out: list[Reservation] = []
        for subnet_id in sorted(set(subnet_ids)):
            token: str | None = None
            while True:
                params: dict[str, Any] = {"SubnetId": subnet_id, "MaxResults": _PAGE_SIZE}
                if token:
                    params["NextToken"] = token
                try:
                    page = self._call("get_subnet_cidr_reservations", "GetSubnetCidrReservations", **params)
                except EC2Error as err:
                    if err.code == "InvalidSubnetID.NotFound":
                        break
                    raise
                for raw in (*page.get("SubnetIpv4CidrReservations", []), *page.get("SubnetIpv6CidrReservations", [])):
                    out.append(_reservation(raw))
                token = page.get("NextToken")
                if not token:
                    break
        return out

    def create_cidr_reservation(
        self, subnet_id: str, cidr: str, description: str, tags: Mapping[str, str], reservation_type: str = "explicit"
    ) -> Reservation:
        answer = self._call(
            "create_subnet_cidr_reservation",
            "CreateSubnetCidrReservation",
            SubnetId=subnet_id,
            Cidr=cidr,
            ReservationType=reservation_type,
            Description=description,
            TagSpecifications=[{"ResourceType": "subnet-cidr-reservation", "Tags": _tag_list(tags)}],
        )
        return _reservation(answer["SubnetCidrReservation"])

    def delete_cidr_reservation(self, reservation_id: str) -> None:
        self._call(
            "delete_subnet_cidr_reservation", "DeleteSubnetCidrReservation", SubnetCidrReservationId=reservation_id
        )

    def describe_enis_in_subnets(self, subnet_ids: Sequence[str]) -> list[ObservedENI]:
        """Every ENI of these subnets, ours or not: the addresses in use there."""
        out: list[ObservedENI] = []
        for chunk in _chunks(sorted(set(subnet_ids))):
            out += self._describe_enis([{"Name": "subnet-id", "Values": chunk}])
        return out

    def describe_vpc_subnets(self, vpc_ids: Iterable[str]) -> list[Subnet]:
        """All subnets of these VPCs (one filtered, paginated call per 200 VPCs)."""
        out: list[Subnet] = []
        for chunk in _chunks(sorted(set(vpc_ids))):
            pages = self._paginate("describe_subnets", "DescribeSubnets", Filters=[{"Name": "vpc-id", "Values": chunk}])
            out += [_subnet(raw) for page in pages for raw in page.get("Subnets", [])]
        return out

    # -- plumbing ----------------------------------------------------------------------

    def _call(self, method: str, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, method)(**params)
        except ClientError as err:
            raise _error(err, operation) from err
        except BotoCoreError as err:
            raise EC2Error(type(err).__name__, str(err), operation) from err

    def _paginate(self, method: str, operation: str, **params: Any) -> list[dict[str, Any]]:
        try:
            paginator = self.client.get_paginator(method)
            return list(paginator.paginate(**params, PaginationConfig={"PageSize": _PAGE_SIZE}))
        except ClientError as err:
            raise _error(err, operation) from err
        except BotoCoreError as err:
            raise EC2Error(type(err).__name__, str(err), operation) from err


def _error(err: ClientError, operation: str) -> EC2Error:
    info = err.response.get("Error", {})
    return EC2Error(str(info.get("Code", "Unknown")), str(info.get("Message", "")), operation)


def _chunks(values: Sequence[str], size: int = _FILTER_CHUNK) -> list[list[str]]:
    values = list(values)
    return [values[i : i + size] for i in range(0, len(values), size)]


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tags(raw: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in raw or ()}


def _subnet(raw: Mapping[str, Any]) -> Subnet:
    return Subnet(
        id=raw["SubnetId"],
        az=raw.get("AvailabilityZone", ""),
        cidr=raw.get("CidrBlock", ""),
        name=_tags(raw.get("Tags")).get(NAME),
        vpc_id=raw.get("VpcId", ""),
        available_ips=int(raw.get("AvailableIpAddressCount", 0)),
    )


def _reservation(raw: Mapping[str, Any]) -> Reservation:
    return Reservation(
        id=raw["SubnetCidrReservationId"],
        subnet_id=raw.get("SubnetId", ""),
        cidr=raw.get("Cidr", ""),
        type=raw.get("ReservationType", ""),
        description=raw.get("Description", ""),
        tags=_tags(raw.get("Tags")),
    )


def _eni(raw: Mapping[str, Any]) -> ObservedENI:
    att = raw.get("Attachment")
    attachment = None
    if att and att.get("AttachmentId"):
        attachment = ObservedAttachment(
            id=att["AttachmentId"],
            instance_id=att.get("InstanceId", ""),
            device_index=int(att.get("DeviceIndex", -1)),
            status=att.get("Status", ""),
            delete_on_termination=bool(att.get("DeleteOnTermination", False)),
        )
    # botocore lower-cases nothing: EC2's ENI tags arrive as TagSet.
    tags = _tags(raw.get("TagSet") or raw.get("Tags"))
    return ObservedENI(
        id=raw["NetworkInterfaceId"],
        subnet_id=raw.get("SubnetId", ""),
        az=raw.get("AvailabilityZone", ""),
        status=raw.get("Status", ""),
        mac=raw.get("MacAddress", ""),
        private_ip=raw.get("PrivateIpAddress", ""),
        description=raw.get("Description", ""),
        tags=tags,
        attachment=attachment,
        private_ips=tuple(
            p["PrivateIpAddress"] for p in raw.get("PrivateIpAddresses", []) if p.get("PrivateIpAddress")
        ),
        ipv6s=tuple(a["Ipv6Address"] for a in raw.get("Ipv6Addresses", []) if a.get("Ipv6Address")),
        sg_ids=tuple(g["GroupId"] for g in raw.get("Groups", [])),
        vpc_id=raw.get("VpcId", ""),
    )
