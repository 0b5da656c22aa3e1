"""Classify what botocore raised during an STS call: retry it (TRANSIENT), stop until the user changes
something (PERMANENT), or blame the source credentials (SOURCE_EXPIRED); with one secret-free line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from botocore import exceptions as boto_errors
from botocore.parsers import ResponseParserError

# The protocol error codes (docs/protocol.md) a failure turns into.
from stsd.protocol import SOURCE_ERROR, STS_DENIED, STS_UNAVAILABLE, TIMEOUT


class FailureKind(Enum):
    PERMANENT = "permanent"
    SOURCE_EXPIRED = "source_expired"
    TRANSIENT = "transient"


_PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ValidationError",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidIdentityToken",
        "RegionDisabledException",
        "UnrecognizedClientException",
        "AuthFailure",
    }
)
# Permanent, but the fault lies in the source credentials rather than in the role request.
_SOURCE_CODES = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"})
_EXPIRED_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "IDPCommunicationError",
    }
)

_HINTS = {
    "AccessDenied": "check external_id and the role's trust policy",
    "ValidationError": "check duration_seconds against the role's maximum and the other role settings",
    "InvalidClientTokenId": "the source access key is unknown or deactivated: fix it in your AWS credentials file",
    "UnrecognizedClientException": "the source access key is unknown: fix it in your AWS credentials file",
    "SignatureDoesNotMatch": "check the source secret key, and this machine's clock",
    "RegionDisabledException": "activate STS in that region or set another region",
    "ExpiredToken": "the source session expired: refresh it (e.g. aws sso login) or replace the keys",
}


@dataclass(frozen=True)
class StsFailure:
    kind: FailureKind
    aws_code: str  # the AWS error code, or the botocore exception's name for local failures
    message: str  # one line for a person, never a secret

    @property
    def error_code(self) -> str:
        """The protocol error code (docs/protocol.md) this failure is reported as."""
        if self.kind is FailureKind.SOURCE_EXPIRED or self.aws_code in _SOURCE_CODES:
            return SOURCE_ERROR
        if self.kind is FailureKind.PERMANENT:
            return STS_DENIED
        if self.aws_code == "ReadTimeoutError":
            return TIMEOUT
        return STS_UNAVAILABLE


def one_line(text: object, limit: int = 400) -> str:
    """Collapse whitespace so a message from AWS stays on one line, and bound its length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def classify(error: BaseException, *, action: str, hints: Mapping[str, str] | None = None) -> StsFailure:
    """`action` says what was attempted, e.g. "AssumeRole arn:aws:iam::123456789012:role/x"; `hints`
    replace the advice added to an AWS error code (what to check differs per call)."""
    if isinstance(error, boto_errors.ClientError):
        return _classify_client_error(error, action, {**_HINTS, **(hints or {})})
    name = type(error).__name__
    if isinstance(error, (boto_errors.ConnectTimeoutError, boto_errors.ReadTimeoutError)):
        return StsFailure(
            FailureKind.TRANSIENT, name, f"{action}: STS timed out ({one_line(error)}); retrying"
        )
    if isinstance(error, boto_errors.SSLError):
        return StsFailure(
            FailureKind.TRANSIENT,
            name,
            f"{action}: STS's certificate is not trusted ({one_line(error)}): set ca_bundle in the AWS "
            "config profile, or AWS_CA_BUNDLE for the daemon; retrying",
        )
    if isinstance(error, (boto_errors.EndpointConnectionError, boto_errors.ConnectionError)):
        return StsFailure(
            FailureKind.TRANSIENT, name, f"{action}: STS unreachable ({one_line(error)}); retrying"
        )
    if isinstance(error, (ResponseParserError, boto_errors.IncompleteReadError)):
        return StsFailure(FailureKind.TRANSIENT, name, f"{action}: STS sent an unreadable reply; retrying")
    if isinstance(error, boto_errors.HTTPClientError):
        return StsFailure(FailureKind.TRANSIENT, name, f"{action}: HTTP error ({one_line(error)}); retrying")
    if isinstance(error, boto_errors.ParamValidationError):
        return StsFailure(FailureKind.PERMANENT, "ValidationError", f"{action} rejected: {one_line(error)}")
    if isinstance(error, boto_errors.NoCredentialsError):
        return StsFailure(FailureKind.PERMANENT, name, f"{action}: no source credentials")
    if isinstance(error, (OSError, boto_errors.BotoCoreError)):
        return StsFailure(FailureKind.TRANSIENT, name, f"{action} failed: {one_line(error)}; retrying")
    return StsFailure(FailureKind.TRANSIENT, name, f"{action} failed: {name}; see the daemon log")


def _classify_client_error(
    error: boto_errors.ClientError, action: str, hints: Mapping[str, str]
) -> StsFailure:
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "Unknown")
    aws_message = one_line(details.get("Message") or "")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    text = f"{code}: {aws_message}" if aws_message else code
    hint = hints.get(code)
    suffix = f" ({hint})" if hint else ""
    if code in _EXPIRED_CODES:
        return StsFailure(FailureKind.SOURCE_EXPIRED, code, f"{action} failed: {text}{suffix}")
    if code in _THROTTLE_CODES or status == 429:
        return StsFailure(FailureKind.TRANSIENT, code, f"{action} throttled: {text}; retrying")
    if status >= 500 or code in ("InternalFailure", "ServiceUnavailable", "InternalError"):
        return StsFailure(
            FailureKind.TRANSIENT, code, f"{action}: STS failed (HTTP {status}): {text}; retrying"
        )
    if code in _PERMANENT_CODES or 400 <= status < 500:
        return StsFailure(FailureKind.PERMANENT, code, f"{action} denied: {text}{suffix}")
    return StsFailure(FailureKind.TRANSIENT, code, f"{action} failed: {text}; retrying")
