"""IMDSv2 client: the instance's own ID and network interfaces, with only urllib.

IMDSv2 only (FACTS.md): a session token from `PUT /latest/api/token`, then every GET carries it.
The token is reused until shortly before it expires. No boto3: the agent needs four paths, and
botocore's IMDS fetcher is private API.

`proxy` handlers are disabled on purpose: EC2 refuses token requests that went through a proxy,
and an HTTP_PROXY in a pod's environment must not send instance metadata elsewhere.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL = 21600  # the maximum EC2 allows
# Renew this long before the token expires, so a request never carries a token about to lapse.
RENEW_MARGIN = 60.0


class ImdsError(RuntimeError):
    """IMDS did not answer, or answered with an HTTP error (the message says which path)."""


@dataclass(frozen=True)
class InterfaceMetadata:
    mac: str
    device_number: int
    interface_id: str


class ImdsClient:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, timeout: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token: str | None = None
        self._token_expiry = 0.0
        self._lock = threading.Lock()

    def get(self, path: str) -> str:
        """The body at `/latest/meta-data/<path>`; ImdsError on any failure."""
        url = f"{self.endpoint}/latest/meta-data/{path.lstrip('/')}"
        for attempt in range(2):
            request = urllib.request.Request(url, headers={TOKEN_HEADER: self._session_token()})
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return response.read().decode()
            except urllib.error.HTTPError as err:
                # 401: the token expired or IMDS restarted; one fresh token, then give up.
                if err.code == 401 and attempt == 0:
                    self._forget_token()
                    continue
                raise ImdsError(f"IMDS GET {path}: HTTP {err.code}") from err
            except (urllib.error.URLError, OSError) as err:
                raise ImdsError(f"IMDS GET {path}: {err}") from err
        raise AssertionError("unreachable")

    def instance_id(self) -> str:
        return self.get("instance-id").strip()

    def availability_zone(self) -> str:
        return self.get("placement/availability-zone").strip()

    def interfaces(self) -> list[InterfaceMetadata]:
        """Every attached ENI as the instance sees it, sorted by device number."""
        result = []
        for entry in self.get("network/interfaces/macs/").split():
            mac = entry.rstrip("/").lower()
            base = f"network/interfaces/macs/{mac}"
            result.append(
                InterfaceMetadata(
                    mac=mac,
                    device_number=int(self.get(f"{base}/device-number").strip()),
                    interface_id=self.get(f"{base}/interface-id").strip(),
                )
            )
        return sorted(result, key=lambda i: i.device_number)

    def primary_mac(self) -> str:
        """The primary ENI's MAC (device index 0, which nothing of ours may touch)."""
        try:
            return self.get("mac").strip().lower()
        except ImdsError:
            pass  # an older or partial metadata service: find device-number 0 instead
        for interface in self.interfaces():
            if interface.device_number == 0:
                return interface.mac
        raise ImdsError("IMDS lists no interface with device-number 0")

    def _session_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token_expiry:
                self._token = self._fetch_token()
                self._token_expiry = time.monotonic() + TOKEN_TTL - RENEW_MARGIN
            return self._token

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _fetch_token(self) -> str:
        request = urllib.request.Request(
            f"{self.endpoint}{TOKEN_PATH}", method="PUT", headers={TTL_HEADER: str(TOKEN_TTL)}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.read().decode().strip()
        except urllib.error.HTTPError as err:
            raise ImdsError(f"IMDS token: HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise ImdsError(f"IMDS token: {err}") from err
