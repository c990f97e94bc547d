"""ClientToken idempotency for CreateNetworkInterface (moto ignores the token).

AWS EC2 API Reference, "Ensuring idempotency in Amazon EC2 API requests": "If you repeat a request
with the same client token and the same parameters, EC2 returns the result of the original
request ... If you repeat the request with the same client token but change one or more
parameters, EC2 returns an IdempotentParameterMismatch error."

Tokens are kept on moto's backend object, so moto's reset forgets them. A token whose ENI has
since been deleted is forgotten too: the retry then creates a new ENI.
"""

from __future__ import annotations

from typing import Any

from multus_eni.sandbox.ec2 import errors

# Parameters that do not make two requests different.
_IGNORED = {"Action", "Version", "ClientToken", "DryRun"}


def fingerprint(querystring: dict[str, list[str]]) -> tuple:
    return tuple(sorted((key, tuple(values)) for key, values in querystring.items() if key not in _IGNORED))


def _tokens(backend: Any) -> dict[str, tuple[tuple, str]]:
    if not hasattr(backend, "_fidelity_client_tokens"):
        backend._fidelity_client_tokens = {}
    return backend._fidelity_client_tokens


def earlier_result(backend: Any, token: str, request: tuple) -> Any | None:
    """The ENI the first request with this token created, or None if the token is new."""
    known = _tokens(backend).get(token)
    if known is None:
        return None
    first_request, eni_id = known
    eni = backend.enis.get(eni_id)
    if eni is None:
        del _tokens(backend)[token]
        return None
    if first_request != request:
        raise errors.IdempotentParameterMismatch()
    return eni


def remember(backend: Any, token: str, request: tuple, eni_id: str) -> None:
    _tokens(backend)[token] = (request, eni_id)
