"""Plain HTTPS requests to an apiserver with a kubeconfig's embedded credentials.

For what lightkube does not expose (GET /version, server-side Table output). Works with
any kubeconfig carrying certificate-authority-data and client cert/key data, so tests
using it keep working when the shared `world` fixture replaces their own apiserver.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def ssl_context_from_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext]:
    """(server URL, SSLContext) of the kubeconfig's current context."""
    config = yaml.safe_load(Path(path).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    return cluster["server"], ctx


def get_json(kubeconfig: Path, path: str, accept: str = "application/json") -> Any:
    server, ctx = ssl_context_from_kubeconfig(kubeconfig)
    request = urllib.request.Request(server + path, headers={"Accept": accept})
    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
        return json.loads(response.read())
