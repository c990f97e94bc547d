"""Wire the rules into moto 5.2.5 by wrapping its methods (never copying them).

Pinned to moto 5.2.5 (pyproject.toml): the wrapped names and call shapes below were read from
moto/ec2/models/{elastic_network_interfaces,instances,subnets}.py and
moto/ec2/responses/elastic_network_interfaces.py of that version. Wrapping happens at class
level, so the rules hold for every caller in the process: the HTTP server, RunInstances creating
its ENIs, CloudFormation. `install()` is idempotent.
"""

from __future__ import annotations

import fnmatch
import functools
import time
from collections.abc import Callable
from typing import Any

import moto
from moto.core.responses import ActionResult
from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import InvalidNetworkInterfaceIdError
from moto.ec2.models import EC2Backend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_network_interfaces import Attachment, NetworkInterface
from moto.ec2.models.instances import Instance
from moto.ec2.models.subnets import Subnet
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces

from multus_eni.sandbox.ec2 import idempotency, lifecycle, reservations, rules_addresses, runtime

MOTO_VERSION = "5.2.5"
_installed = False


def _wrap(owner: type | Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name)
    wrapper = make(original)
    functools.update_wrapper(wrapper, original)
    setattr(owner, name, wrapper)


# --- backend: the rules hold whoever calls -------------------------------------------------------


def _create_network_interface(original: Callable) -> Callable:
    def create(self, subnet, private_ip_address, private_ip_addresses=None, *args, **kwargs):
        subnet = self.get_subnet(subnet) if isinstance(subnet, str) else subnet
        plan = rules_addresses.resolve_create(
            self,
            subnet,
            private_ip_address,
            private_ip_addresses,
            secondary_count=int(kwargs.pop("secondary_ips_count", None) or 0),
            ipv6_addresses=list(kwargs.pop("ipv6_addresses", None) or []),
            ipv6_count=int(kwargs.pop("ipv6_address_count", None) or 0),
        )
        addresses = plan.moto_private_ip_addresses()
        eni = original(self, subnet, plan.primary, addresses, *args, ipv6_addresses=plan.ipv6, **kwargs)
        eni._fidelity_created = time.monotonic()  # for the eventual-consistency fault
        return eni

    return create


def _assign_private_ip_addresses(original: Callable) -> Callable:
    def assign(self, eni_id, private_ip_addresses=None, secondary_ips_count=None, allow_reassignment=False):
        eni = self.get_network_interface(eni_id)
        plan = rules_addresses.resolve_assign_ipv4(
            self, eni, list(private_ip_addresses or []), int(secondary_ips_count or 0), allow_reassignment
        )
        for holder, address in plan.moves:
            self.unassign_private_ip_addresses(holder.id, [address])
        return original(self, eni_id, plan.new, None) if plan.new else eni

    return assign


def _assign_ipv6_addresses(original: Callable) -> Callable:
    def assign(self, eni_id, ipv6_addresses=None, ipv6_count=None):
        eni = self.get_network_interface(eni_id)
        plan = rules_addresses.resolve_assign_ipv6(self, eni, list(ipv6_addresses or []), int(ipv6_count or 0))
        return original(self, eni_id, plan.new, 0) if plan.new else eni

    return assign


def _attach(original: Callable) -> Callable:
    def attach_network_interface(self, eni_id, instance_id, device_index):
        return lifecycle.attach(original, self, eni_id, instance_id, device_index)

    return attach_network_interface


def _detach(original: Callable) -> Callable:
    def detach_network_interface(self, attachment_id):
        return lifecycle.detach(original, self, attachment_id)

    return detach_network_interface


def _delete(original: Callable) -> Callable:
    def delete_network_interface(self, eni_id):
        return lifecycle.delete(original, self, eni_id)

    return delete_network_interface


def _get_network_interface(original: Callable) -> Callable:
    def get_network_interface(self, eni_id):
        eni = original(self, eni_id)
        if runtime.faults.hidden(eni):
            raise InvalidNetworkInterfaceIdError(eni_id)
        return eni

    return get_network_interface


def _get_all_network_interfaces(original: Callable) -> Callable:
    def get_all_network_interfaces(self, eni_ids=None, filters=None):
        enis = original(self, eni_ids, filters)
        hidden = [eni for eni in enis if runtime.faults.hidden(eni)]
        if hidden and eni_ids:
            raise InvalidNetworkInterfaceIdError(hidden[0].id)
        return [eni for eni in enis if eni not in hidden]

    return get_all_network_interfaces


def _install_backend() -> None:
    _wrap(EC2Backend, "create_network_interface", _create_network_interface)
    _wrap(EC2Backend, "assign_private_ip_addresses", _assign_private_ip_addresses)
    _wrap(EC2Backend, "assign_ipv6_addresses", _assign_ipv6_addresses)
    _wrap(EC2Backend, "attach_network_interface", _attach)
    _wrap(EC2Backend, "detach_network_interface", _detach)
    _wrap(EC2Backend, "delete_network_interface", _delete)
    _wrap(EC2Backend, "get_network_interface", _get_network_interface)
    _wrap(EC2Backend, "get_all_network_interfaces", _get_all_network_interfaces)


# --- models -------------------------------------------------------------------------------------


def _attachment_init(original: Callable) -> Callable:
    def init(self, eni):
        original(self, eni)
        self.status = lifecycle.attachment_state(eni)

    return init


def _eni_filter_value(original: Callable) -> Callable:
    def get_filter_value(self, filter_name, method_name=None):
        value = lifecycle.attachment_filter_value(self, filter_name)
        return original(self, filter_name, method_name) if value is None else value

    return get_filter_value


def _subnet_available_ip(original: Callable) -> Callable:
    def get_available_subnet_ip(self, instance):
        address = rules_addresses.pick_instance_primary(self.ec2_backend, self)
        self._subnet_ips[address] = instance
        return address

    return get_available_subnet_ip


def _subnet_request_ip(original: Callable) -> Callable:
    def request_ip(self, ip, instance):
        # moto's own check trips over addresses of terminated instances it never released.
        rules_addresses.check_instance_primary(self.ec2_backend, self, ip)
        self._subnet_ips[ip] = instance

    return request_ip


def _filter_matching(original: Callable) -> Callable:
    def is_filter_matching(obj, _filter, filter_value):
        """AWS EC2 API Reference, "List and filter your resources": "If you specify multiple values
        for a filter, the values are joined with an OR" — also for attributes with several values
        (an ENI's addresses, groups). moto requires subset/superset there."""
        value = obj.get_filter_value(_filter)
        if isinstance(value, list | set | tuple) and filter_value is not None:
            patterns = filter_value if isinstance(filter_value, list) else [filter_value]
            return any(fnmatch.fnmatch(str(item), str(pattern)) for item in value for pattern in patterns)
        return original(obj, _filter, filter_value)

    return is_filter_matching


def _terminate(original: Callable) -> Callable:
    def terminate(self):
        return lifecycle.terminate(original, self)

    return terminate


def _prep_nics(original: Callable) -> Callable:
    def prep_nics(self, nic_spec, *args, **kwargs):
        return lifecycle.launch_interfaces(original, self, nic_spec, *args, **kwargs)

    return prep_nics


def _get_tags(original: Callable) -> Callable:
    def get_tags(self):
        """The same answer as moto's, read from the backend's per-resource dict. moto finds one
        resource's tags by scanning every tag of every resource, so a tag-filtered
        DescribeNetworkInterfaces over N ENIs costs N x (all tags): about 17 s at 1000 nodes, under
        the model lock that every other call waits for (bench/scale.py). EC2 is not quadratic."""
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        kind = ec2_utils.EC2_PREFIX_TO_RESOURCE.get(ec2_utils.get_prefix(resource_id), "")
        tags = self.ec2_backend.tags.get(resource_id) or {}
        return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]

    return get_tags


def _install_models() -> None:
    _wrap(TaggedEC2Resource, "get_tags", _get_tags)
    _wrap(Attachment, "__init__", _attachment_init)
    _wrap(NetworkInterface, "get_filter_value", _eni_filter_value)
    _wrap(Instance, "terminate", _terminate)
    _wrap(Instance, "prep_nics", _prep_nics)
    _wrap(Subnet, "get_available_subnet_ip", _subnet_available_ip)
    _wrap(Subnet, "request_ip", _subnet_request_ip)
    _wrap(ec2_utils, "is_filter_matching", _filter_matching)


# --- responses: parameters moto's handlers drop -------------------------------------------------


def _create_response(original: Callable) -> Callable:
    def create_network_interface(self):
        token = self._get_param("ClientToken")
        if not token:
            return original(self)
        request = idempotency.fingerprint(self.querystring)
        eni = idempotency.earlier_result(self.ec2_backend, token, request)
        if eni is None:
            eni = original(self).result["NetworkInterface"]
            idempotency.remember(self.ec2_backend, token, request, eni.id)
        return ActionResult({"NetworkInterface": eni, "ClientToken": token})

    return create_network_interface


def _modify_response(original: Callable) -> Callable:
    def modify_network_interface_attribute(self):
        attachment = self._get_param("Attachment")
        if attachment:
            lifecycle.set_delete_on_termination(
                self.ec2_backend,
                self._get_param("NetworkInterfaceId"),
                attachment.get("AttachmentId"),
                attachment.get("DeleteOnTermination") in (True, "true"),
            )
        return original(self)

    return modify_network_interface_attribute


def _assign_ipv4_response(original: Callable) -> Callable:
    def assign_private_ip_addresses(self):
        """EC2 returns only the addresses this call assigned; AllowReassignment reaches the rules."""
        eni_id = self._get_param("NetworkInterfaceId")
        before = {
            entry["PrivateIpAddress"] for entry in self.ec2_backend.get_network_interface(eni_id).private_ip_addresses
        }
        eni = self.ec2_backend.assign_private_ip_addresses(
            eni_id,
            self._get_param("PrivateIpAddresses", []),
            self._get_int_param("SecondaryPrivateIpAddressCount", 0),
            allow_reassignment=self._get_bool_param("AllowReassignment", False),
        )
        new = [entry for entry in eni.private_ip_addresses if entry["PrivateIpAddress"] not in before]
        return ActionResult({"NetworkInterfaceId": eni.id, "AssignedPrivateIpAddresses": new})

    return assign_private_ip_addresses


def _assign_ipv6_response(original: Callable) -> Callable:
    def assign_ipv6_addresses(self):
        eni_id = self._get_param("NetworkInterfaceId")
        before = set(self.ec2_backend.get_network_interface(eni_id).ipv6_addresses)
        eni = self.ec2_backend.assign_ipv6_addresses(
            eni_id, self._get_param("Ipv6Addresses", []), self._get_int_param("Ipv6AddressCount", 0)
        )
        new = [address for address in eni.ipv6_addresses if address not in before]
        return ActionResult({"NetworkInterfaceId": eni.id, "AssignedIpv6Addresses": new})

    return assign_ipv6_addresses


def _install_responses() -> None:
    _wrap(ElasticNetworkInterfaces, "create_network_interface", _create_response)
    _wrap(ElasticNetworkInterfaces, "modify_network_interface_attribute", _modify_response)
    _wrap(ElasticNetworkInterfaces, "assign_private_ip_addresses", _assign_ipv4_response)
    _wrap(ElasticNetworkInterfaces, "assign_ipv6_addresses", _assign_ipv6_response)


def install() -> None:
    global _installed
    if _installed:
        return
    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(f"the EC2 fidelity layer is written against moto {MOTO_VERSION}, found {moto.__version__}")
    _install_backend()
    _install_models()
    _install_responses()
    reservations.install()
    _installed = True
