"""The life of an attachment as EC2 lives it: attaching -> attached, detaching -> detached after a
delay, DeleteOnTermination honoured when the instance terminates, no delete while in use.

State lives on moto's own ENI objects (`_fidelity_state`, `_fidelity_announced`), so moto's reset
clears it with everything else. Attachment events are published only for attachments made by
AttachNetworkInterface (those that were announced `attached`); the interfaces an instance is
launched with are part of the instance from the start and are never announced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from moto.ec2.exceptions import InvalidNetworkAttachmentIdError

from multus_eni.sandbox.ec2 import errors, runtime
from multus_eni.sandbox.ec2.events import AttachmentEvent
from multus_eni.sandbox.ec2.rules_attach import check_attach, check_detachable

ATTACHING, ATTACHED, DETACHING = "attaching", "attached", "detaching"


def attachment_state(eni: Any) -> str:
    return getattr(eni, "_fidelity_state", ATTACHED)


def _event(kind: str, eni: Any) -> AttachmentEvent:
    return AttachmentEvent(
        kind=kind,  # type: ignore[arg-type]
        eni_id=eni.id,
        instance_id=eni.instance.id,
        device_index=int(eni.device_index),
        mac=eni.mac_address,
        attachment_id=eni.attachment_id,
    )


def _is_live(eni: Any, attachment_id: str, state: str) -> bool:
    """The ENI still exists (no reset, no delete) and still has the attachment in that state."""
    return (
        eni.ec2_backend.enis.get(eni.id) is eni
        and eni.attachment_id == attachment_id
        and attachment_state(eni) == state
    )


def _clear(eni: Any) -> None:
    eni.__dict__.pop("_fidelity_state", None)
    eni.__dict__.pop("_fidelity_announced", None)
    eni.delete_on_termination = False


def attach(original: Callable, backend: Any, eni_id: str, instance_id: str, device_index: Any) -> Any:
    """AWS EC2 API Reference, AttachNetworkInterface, and User Guide, "Network interface
    attachments": the call returns an attachment ID at once while the attachment is `attaching`;
    it becomes `attached` a moment later. API attachments start with DeleteOnTermination false."""
    eni = backend.get_network_interface(eni_id)
    instance = backend.get_instance(instance_id)
    index = int(device_index)
    check_attach(eni, instance, index)
    original(backend, eni_id, instance_id, index)
    eni.delete_on_termination = False
    eni._fidelity_state, eni._fidelity_announced = ATTACHING, False
    runtime.scheduler.call_later(runtime.settings["attach_delay"], partial(_finish_attach, eni, eni.attachment_id))
    return eni.attachment


def _finish_attach(eni: Any, attachment_id: str) -> None:
    with runtime.MODEL_LOCK:
        if not _is_live(eni, attachment_id, ATTACHING):
            return
        eni._fidelity_state, eni._fidelity_announced = ATTACHED, True
        runtime.bus.publish(_event("attached", eni))


def detach(original: Callable, backend: Any, attachment_id: str) -> None:
    """AWS EC2 API Reference, DetachNetworkInterface: the attachment is `detaching` until the
    instance lets go, then `detached` and the ENI `available`. A second detach of an attachment
    that is already detaching changes nothing."""
    eni = next((e for e in backend.enis.values() if e.attachment_id == attachment_id), None)
    if eni is None:
        raise InvalidNetworkAttachmentIdError(attachment_id)
    check_detachable(eni)
    if attachment_state(eni) == DETACHING:
        return
    eni._fidelity_state = DETACHING
    runtime.scheduler.call_later(
        runtime.settings["detach_delay"], partial(_finish_detach, original, eni, attachment_id)
    )


def _finish_detach(original: Callable, eni: Any, attachment_id: str) -> None:
    with runtime.MODEL_LOCK:
        if not _is_live(eni, attachment_id, DETACHING):
            return
        event = _event("detached", eni) if getattr(eni, "_fidelity_announced", False) else None
        original(eni.ec2_backend, attachment_id)
        _clear(eni)
        if event is not None:
            runtime.bus.publish(event)


def delete(original: Callable, backend: Any, eni_id: str) -> None:
    """AWS EC2 User Guide, "Delete a network interface": "You can't delete a network interface
    that is in use" — attached, attaching or detaching (`InvalidNetworkInterface.InUse`)."""
    eni = backend.get_network_interface(eni_id)
    if eni.instance is not None:
        raise errors.NetworkInterfaceInUseOnDelete(eni_id)
    original(backend, eni_id)


def terminate(original: Callable, instance: Any) -> Any:
    """AWS EC2 User Guide, "Network interface attachments" / "Modify network interface attributes":
    when an instance terminates, its network interfaces whose attachment has DeleteOnTermination
    true are deleted; the others are detached and become `available`. (moto leaves them `in-use`.)"""
    if instance.state == "terminated":
        return original(instance)
    backend = instance.ec2_backend
    for _, eni in sorted(instance.nics.items()):
        event = _event("detached", eni) if getattr(eni, "_fidelity_announced", False) else None
        delete_it = bool(eni.delete_on_termination)
        instance.detach_eni(eni)
        _clear(eni)
        if delete_it:
            backend.enis.pop(eni.id, None)
        if event is not None:
            runtime.bus.publish(event)
    return original(instance)


def set_delete_on_termination(backend: Any, eni_id: str, attachment_id: str, value: bool) -> None:
    """AWS EC2 API Reference, ModifyNetworkInterfaceAttribute, Attachment: "Information about the
    interface attachment. If modifying the delete on termination attribute, you must specify the
    ID of the interface attachment." """
    eni = backend.get_network_interface(eni_id)
    if not attachment_id or eni.attachment_id != attachment_id:
        raise errors.AttachmentNotFound(attachment_id)
    eni.delete_on_termination = bool(value)


def launch_interfaces(original: Callable, instance: Any, nic_spec: list[dict[str, Any]], *args, **kwargs) -> None:
    """AWS EC2 API Reference, InstanceNetworkInterfaceSpecification.DeleteOnTermination: interfaces
    created at launch are deleted on termination unless the request says otherwise (the console and
    API default for the primary interface is true); an existing ENI attached at launch keeps false.
    moto defaults every one of them to false."""
    specs = {int(spec.get("DeviceIndex", 0)): spec for spec in nic_spec or []}
    original(instance, nic_spec, *args, **kwargs)
    for device_index, eni in instance.nics.items():
        spec = specs.get(device_index, {})
        if spec.get("NetworkInterfaceId"):
            eni.delete_on_termination = False
        else:
            eni.delete_on_termination = spec.get("DeleteOnTermination") not in (False, "false")
        eni._fidelity_state, eni._fidelity_announced = ATTACHED, False


def attachment_filter_value(eni: Any, filter_name: str) -> Any:
    """DescribeNetworkInterfaces filters moto lacks (EC2 API Reference lists them all)."""
    if filter_name == "attachment.status":
        return attachment_state(eni) if eni.attachment_id else ""
    if filter_name == "attachment.device-index":
        return eni.device_index if eni.attachment_id else ""
    if filter_name == "attachment.delete-on-termination":
        return bool(eni.delete_on_termination) if eni.attachment_id else ""
    if filter_name == "mac-address":
        return eni.mac_address
    if filter_name == "private-ip-address":
        return [entry["PrivateIpAddress"] for entry in eni.private_ip_addresses]
    if filter_name == "ipv6-addresses.ipv6-address":
        return list(eni.ipv6_addresses)
    return None
