"""Writing what the controller decided back to a custom resource: status, conditions, finalizer.

Objects are plain dicts (the informer's). Every write is skipped when it would change
nothing, so a steady cluster costs no apiserver writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, Client
from lightkube.types import PatchType

log = logging.getLogger(__name__)

FINALIZER = "multus-eni.io/cleanup"
_CONFLICT_RETRIES = 5


# --- pure helpers ----------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`; {} when they are equal.

    Lists are replaced whole, as merge patch does; keys gone from `new` become null.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            if sub := merge_patch(before, value):
                patch[key] = sub
        elif key not in old or before != value:
            patch[key] = value
    return patch


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new conditions list with `type_` set; other conditions keep their order.

    `lastTransitionTime` moves only when the status value flips, as the API conventions
    ask: it says since when a thing has been true, not when we last looked.
    """
    status = ("True" if status else "False") if isinstance(status, bool) else status
    previous = find_condition(conditions, type_)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = previous["lastTransitionTime"]
    else:
        transition = now or now_rfc3339()
    condition: dict[str, Any] = {
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": transition,
    }  # fmt: skip
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    result = [dict(c) for c in conditions or () if c.get("type") != type_]
    position = next((i for i, c in enumerate(conditions or ()) if c.get("type") == type_), len(result))
    result.insert(position, condition)
    return result


def has_finalizer(obj: Mapping[str, Any], finalizer: str = FINALIZER) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or ())


def is_being_deleted(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


# --- writes ----------------------------------------------------------------------------------


def _where(obj: Mapping[str, Any]) -> tuple[str, str | None]:
    meta = obj["metadata"]
    return meta["name"], meta.get("namespace")


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def patch_status(client: Client, resource: Any, obj: Mapping[str, Any],
                 status: Mapping[str, Any]) -> dict[str, Any] | None:
    """Make `obj`'s status equal `status` with one merge patch on the status subresource.

    Returns the patched object, or None when nothing differed from `obj` (no request)
    or the object is gone. The controller is the status's only writer (one leader), so
    no resourceVersion precondition: the last pass wins, as it should.
    """
    patch = merge_patch(obj.get("status") or {}, status)
    if not patch:
        return None
    name, namespace = _where(obj)
    try:
        patched = client.patch(resource.Status, name, {"status": patch}, namespace=namespace,
                               patch_type=PatchType.MERGE)
    except ApiError as err:
        if err.status.code == 404:
            log.debug("status of %s not written: it is gone", name)
            return None
        raise
    return _as_dict(patched)


def add_finalizer(client: Client, resource: Any, obj: Mapping[str, Any],
                  finalizer: str = FINALIZER) -> dict[str, Any] | None:
    """Add our finalizer; None when already there, or when the object is being deleted
    (the apiserver refuses new finalizers then) or gone."""
    if has_finalizer(obj, finalizer) or is_being_deleted(obj):
        return None
    return _change_finalizers(client, resource, obj, lambda fs: None if finalizer in fs else [*fs, finalizer])


def remove_finalizer(client: Client, resource: Any, obj: Mapping[str, Any],
                     finalizer: str = FINALIZER) -> dict[str, Any] | None:
    """Remove our finalizer; None when it was not there or the object is gone."""
    if not has_finalizer(obj, finalizer):
        return None
    return _change_finalizers(
        client, resource, obj, lambda fs: [f for f in fs if f != finalizer] if finalizer in fs else None
    )


def _change_finalizers(client: Client, resource: Any, obj: Mapping[str, Any], change) -> dict[str, Any] | None:
    """JSON patch that tests the finalizer list we read, so another controller's
    finalizer added meanwhile is never overwritten: on a failed test we re-read."""
    name, namespace = _where(obj)
    current: Mapping[str, Any] | None = obj
    for _attempt in range(_CONFLICT_RETRIES):
        if current is None:
            try:
                current = _as_dict(client.get(resource, name, namespace=namespace))
            except ApiError as err:
                if err.status.code == 404:
                    return None
                raise
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        new = change(finalizers)
        if new is None:
            return None
        if "finalizers" in meta:
            ops = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                   {"op": "replace", "path": "/metadata/finalizers", "value": new}]
        else:
            ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                   {"op": "add", "path": "/metadata/finalizers", "value": new}]
        try:
            return _as_dict(client.patch(resource, name, ops, namespace=namespace, patch_type=PatchType.JSON))
        except ApiError as err:
            if err.status.code == 404:
                return None
            if err.status.code not in (409, 422):
                raise
            log.debug("finalizers of %s changed under us; re-reading", name)
            last_error, current = err, None
    raise RuntimeError(f"finalizers of {name} kept changing (or the patch is invalid: {last_error.status.message});"
                       f" gave up after {_CONFLICT_RETRIES} tries")
