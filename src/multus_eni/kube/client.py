"""lightkube clients, our resource classes, and CRD installation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from multus_eni.api import crd as nodeeni_crd
from multus_eni.kube.decoding import prime_decoders

FIELD_MANAGER = "multus-eni"

NodeENI = create_global_resource(nodeeni_crd.GROUP, nodeeni_crd.VERSION, nodeeni_crd.KIND, nodeeni_crd.PLURAL)
NetworkAttachmentDefinition = create_namespaced_resource(
    "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions"
)

# Every process that talks to the apiserver imports this module before it starts threads: the
# decoding tables are complete before two threads can decode one type at once (kube/decoding.py).
prime_decoders()


class CRDNotEstablished(RuntimeError):
    """The apiserver did not report the CRD Established in time (its conditions say why)."""


def client_from_kubeconfig(path: Path | str, *, timeout: float = 10.0) -> Client:
    """A client for the current context of a kubeconfig file (not the environment's)."""
    config = KubeConfig.from_file(str(path))
    return Client(config=config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(timeout), trust_env=False)


def apply_crd(client: Client, crd: dict[str, Any], *, timeout: float = 30.0) -> None:
    """Create or update a CRD (server-side apply, our field manager) and wait until it is Established."""
    obj = CustomResourceDefinition.from_dict(crd)
    client.apply(obj, field_manager=FIELD_MANAGER, force=True)
    name = crd["metadata"]["name"]
    deadline = time.monotonic() + timeout
    conditions: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            current = client.get(CustomResourceDefinition, name)
        except ApiError as err:  # a just-created object can be briefly missing from a follower cache
            if err.status.code != 404:
                raise
        else:
            conditions = {c.type: c for c in (current.status.conditions or [])} if current.status else {}
            established = conditions.get("Established")
            if established is not None and established.status == "True":
                return
            names = conditions.get("NamesAccepted")
            if names is not None and names.status == "False":
                raise CRDNotEstablished(f"CRD {name}: names not accepted: {names.message}")
        time.sleep(0.05)  # Established follows within milliseconds; no watch needed for that
    summary = {t: (c.status, c.reason, c.message) for t, c in conditions.items()}
    raise CRDNotEstablished(f"CRD {name} not Established after {timeout}s: {summary}")
