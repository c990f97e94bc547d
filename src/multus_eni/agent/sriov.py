"""The SR-IOV network device plugin's config for the devices we bound to a DPDK driver.

Format: the plugin's config.json (k8snetworkplumbingwg/sriov-network-device-plugin, "Config
parameters"): `{"resourceList": [{"resourceName", "resourcePrefix"?, "selectors": {...}}]}`.
We select by `pciAddresses`, as the EKS DPDK guides do, so exactly the ENIs we bound are offered.
A NodeENI names the resource as Kubernetes shows it ("intel.com/sriov_dpdk"): the part before
the slash becomes `resourcePrefix` (the plugin's default prefix applies when there is none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multus_eni.agent.dpdk import atomic_write

DEFAULT_CONFIG_PATH = Path("/etc/pcidp/config.json")


def device_plugin_config(resources: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    resource_list = []
    for full_name, addresses in sorted(resources.items()):
        if not addresses:
            continue
        prefix, _, name = full_name.rpartition("/")
        entry: dict[str, Any] = {"resourceName": name}
        if prefix:
            entry["resourcePrefix"] = prefix
        entry["selectors"] = {"pciAddresses": sorted(addresses)}
        resource_list.append(entry)
    return {"resourceList": resource_list}


def write_config(path: Path | str, resources: Mapping[str, Sequence[str]]) -> bool:
    """Write the config when its content changes; True when written.

    A node that never used DPDK gets no file: an absent file is left absent while there is
    nothing to offer, so the plugin's own config on such nodes is not ours to replace.
    """
    path = Path(path)
    config = device_plugin_config(resources)
    try:
        current = json.loads(path.read_text())
    except FileNotFoundError:
        if not config["resourceList"]:
            return False
        current = None
    except ValueError:
        current = None
    if current == config:
        return False
    atomic_write(path, json.dumps(config, indent=2) + "\n")
    return True
