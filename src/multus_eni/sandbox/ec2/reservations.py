"""Subnet CIDR reservations keep their Description and tags, as EC2's do (moto 5.2.5 drops both).

EC2 API Reference, CreateSubnetCidrReservation: "Description — The description to assign to the
subnet CIDR reservation" and "TagSpecification.N — The tags to assign to the subnet CIDR
reservation"; GetSubnetCidrReservations returns both (`SubnetCidrReservation.Description`,
`.Tags`) and filters on `tag:<key>` and `tag-key`. The controller reads ownership of a
reservation from them, so the emulator must keep them. Deleting a reservation drops its tags.

Automatic addresses are already kept out of reservations by rules_addresses.pick_automatic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import EC2Backend
from moto.ec2.responses.subnets import Subnets

_RESOURCE_TYPE = "subnet-cidr-reservation"


def _tags_of(specifications: Any) -> dict[str, str]:
    """TagSpecifications as moto's query parser hands them over, for our resource type only."""
    tags: dict[str, str] = {}
    for spec in specifications or []:
        if not isinstance(spec, dict) or spec.get("ResourceType", _RESOURCE_TYPE) != _RESOURCE_TYPE:
            continue
        for tag in spec.get("Tags") or spec.get("Tag") or []:
            tags[tag["Key"]] = tag.get("Value", "")
    return tags


def _create_backend(original: Callable) -> Callable:
    def create_subnet_cidr_reservation(self, subnet_id, reservation_type, cidr, tags=None, description=None):
        reservation = original(self, subnet_id, reservation_type, cidr, tags)
        reservation.description = description or ""
        found = _tags_of(tags)
        if found:
            self.create_tags([reservation.id], found)
        return reservation

    return create_subnet_cidr_reservation


def _delete_backend(original: Callable) -> Callable:
    def delete_subnet_cidr_reservation(self, reservation_id):
        reservation = original(self, reservation_id)
        self.tags.pop(reservation_id, None)
        return reservation

    return delete_subnet_cidr_reservation


def _create_response(original: Callable) -> Callable:
    def create_subnet_cidr_reservation(self):
        self.error_on_dryrun()
        reservation = self.ec2_backend.create_subnet_cidr_reservation(
            self._get_param("SubnetId"),
            self._get_param("ReservationType"),
            self._get_param("Cidr"),
            self._get_param("TagSpecifications", []),
            description=self._get_param("Description"),
        )
        return ActionResult({"SubnetCidrReservation": reservation})

    return create_subnet_cidr_reservation


def _wrap(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name)
    wrapper = make(original)
    functools.update_wrapper(wrapper, original)
    setattr(owner, name, wrapper)


_installed = False


def install() -> None:
    """Idempotent; called by patches.install()."""
    global _installed
    if _installed:
        return
    _wrap(EC2Backend, "create_subnet_cidr_reservation", _create_backend)
    _wrap(EC2Backend, "delete_subnet_cidr_reservation", _delete_backend)
    _wrap(Subnets, "create_subnet_cidr_reservation", _create_response)
    _installed = True
