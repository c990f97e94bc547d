"""EC2 failures, classified by code into condition reasons and messages a person can act on."""

from __future__ import annotations

from multus_eni.plan.model import Failure

# Codes that say nothing about whether the request took effect: the create may have
# happened, so its retry must reuse the ClientToken to get the same ENI back.
_OUTCOME_UNKNOWN_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestExpired",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "HTTPClientError",
    }
)

THROTTLED = "Throttled"


def reason_for(code: str, message: str) -> str:
    """The condition reason for an EC2 error code (FACTS.md, "Errors to handle by code")."""
    if code == "InvalidSubnetID.NotFound":
        return "SubnetNotFound"
    if code in ("InvalidGroup.NotFound", "InvalidSecurityGroupID.NotFound"):
        return "SecurityGroupNotFound"
    if code == "InvalidParameterValue" and "device index" in message.lower():
        return "DeviceIndexInUse"
    if code in ("AttachmentLimitExceeded", "InsufficientFreeAddressesInSubnet", "PrivateIpAddressLimitExceeded"):
        return code
    if code in ("RequestLimitExceeded", "Throttling", "ThrottlingException"):
        return THROTTLED
    if code == "InvalidNetworkInterfaceID.NotFound":
        return "ENINotFound"
    if code == "InvalidNetworkInterface.InUse":
        return "ENIInUse"
    if code in ("InvalidParameterValue", "InvalidParameterCombination", "MissingParameter"):
        return "InvalidSpec"
    if code in ("UnauthorizedOperation", "AuthFailure", "AccessDenied"):
        return "NotAuthorized"
    return "EC2Error"


_ADVICE = {
    "SubnetNotFound": "check the subnet ID or Name tag in the NodeENI",
    "SecurityGroupNotFound": "check securityGroupIDs/securityGroupNames (names are looked up in the subnet's VPC)",
    "DeviceIndexInUse": "another interface already uses this device index on the instance; pick another deviceIndex",
    "AttachmentLimitExceeded": "the instance type takes no more interfaces; use a larger type or fewer NodeENIs",
    "InsufficientFreeAddressesInSubnet": "the subnet has no free address; free some or list a larger subnet",
    "PrivateIpAddressLimitExceeded": "the ENI holds as many addresses as its instance type allows",
    THROTTLED: "EC2 is throttling this account; the controller slows down by itself",
    "NotAuthorized": "the controller's IAM role lacks a permission (see deploy/iam-policy.json)",
}


def advice_for(reason: str) -> str:
    return _ADVICE.get(reason, "the controller retries with backoff")


def is_transient(reason: str) -> bool:
    """Failures that are not the user's to fix (not worth a Degraded condition by themselves)."""
    return reason in (THROTTLED, "ENINotFound", "ENIInUse", "EC2Error")


def create_token_must_change(failure: Failure | None) -> bool:
    """Whether the next create for this key needs a new ClientToken (and pendingSince).

    After a definite refusal (bad subnet, no free address, parameters changed) reusing
    the token would replay the refusal or, with new parameters, fail with
    IdempotentParameterMismatch. After an unknown outcome it must be reused.
    """
    if failure is None or failure.operation != "CreateNetworkInterface":
        return False
    return failure.code not in _OUTCOME_UNKNOWN_CODES and not failure.code.startswith("http5")
