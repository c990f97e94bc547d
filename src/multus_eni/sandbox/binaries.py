"""Where the local world's binaries live.

Go-built binaries (kube-apiserver, Multus) are compiled by scripts/build-binaries.sh
into a cache folder outside the work tree, keyed by the pins in tools/versions.env;
etcd and the CNI plugins come from Debian packages.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins


class MissingBinary(RuntimeError):
    """A binary of the local world is not installed; the message says how to get it."""


@cache
def pinned_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in (REPO_ROOT / "tools" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


def bin_dir() -> Path:
    if override := os.environ.get("MULTUS_ENI_BIN_DIR"):
        return Path(override)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_home / "multus-eni" / "bin"


def _built(name: str, version_key: str) -> Path:
    path = bin_dir() / f"{name}-{pinned_versions()[version_key]}"
    if not os.access(path, os.X_OK):
        raise MissingBinary(f"{path} is missing: run `make deps` (scripts/build-binaries.sh) to build it")
    return path


def kube_apiserver() -> Path:
    return _built("kube-apiserver", "KUBERNETES_VERSION")


def multus() -> Path:
    return _built("multus", "MULTUS_VERSION")


def etcd() -> Path:
    found = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(found, os.X_OK):
        raise MissingBinary("etcd is missing: run `make deps` (Debian package etcd-server)")
    return Path(found)


def cni_plugin(name: str) -> Path:
    path = CNI_BIN_DIR / name
    if not os.access(path, os.X_OK):
        raise MissingBinary(f"CNI plugin {path} is missing: run `make deps` (containernetworking-plugins)")
    return path


def helm() -> Path:
    return _built("helm", "HELM_VERSION")
