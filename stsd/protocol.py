"""The JSON-lines protocol between the daemon and its clients (docs/protocol.md): its version, limits and
error codes, declared once. Standard library only; `json` is imported where used, so the lean client
(stsd.wire) can take these constants without paying for it."""

from __future__ import annotations

TYPE_CHECKING = False  # the typing module costs milliseconds; annotations are strings here

if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_LINE_BYTES = 64 * 1024  # requests are tiny; anything larger is refused, not buffered
# `env`'s optional fields: how long (ms) the asker waits for the reply, and when it asked (epoch seconds,
# the wall clock every process shares): time the request spent queued counts. A session still being
# fetched by then gets PENDING instead, and the fetch goes on for the next ask (the hook's next prompt).
WAIT_FIELD = "wait_ms"
ASKED_AT_FIELD = "asked_at"
MAX_WAIT_MS = 600_000

OPS = ("ping", "env", "credentials", "status", "renew", "mfa")

# Error codes a reply may carry; clients switch on these, the message is for people.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_OP = "unknown_op"
INVALID_PROJECT = "invalid_project"
UNTRUSTED = "untrusted"
DENIED = "denied"
UNKNOWN_PROFILE = "unknown_profile"
SOURCE_ERROR = "source_error"
STS_DENIED = "sts_denied"
MFA_REQUIRED = "mfa_required"  # the source's MFA session is not held: `stsd mfa` (or mfa_process) starts one
SIGN_IN_REQUIRED = (
    "sign_in_required"  # an SSO source's token expired or is missing: `aws sso login` (or `stsd login`)
)
NO_MFA = "no_mfa"  # `mfa` asked for a target whose source has no mfa_serial
STS_UNAVAILABLE = "sts_unavailable"
TIMEOUT = "timeout"
RENEW_LIMITED = "renew_limited"  # a forced renewal of this session came too soon after the last one
# Not a failure: the session was still being fetched when the request's wait_ms ran out, or the request
# waited that long in the daemon's queue (then with "busy": true, and nothing else done); ask again.
PENDING = "pending"
INTERNAL = "internal"
# Refusals a person cures elsewhere (a code, a sign-in) without touching the project: the hook asks again
# at the next prompt, and the daemon calls nothing meanwhile.
ASK_AGAIN_AT_NEXT_PROMPT = frozenset({MFA_REQUIRED, SIGN_IN_REQUIRED})
# Raised by clients, never sent: a reply that breaks the protocol (say, naming a variable stsd never sets).
BAD_REPLY = "bad_reply"


class ProtocolError(Exception):
    """A request or reply that breaks the protocol; `code` is one of the codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message: dict[str, Any]) -> bytes:
    import json

    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line into a JSON object, or raise ProtocolError(bad_request)."""
    import json

    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(TOO_LARGE, f"message exceeds {MAX_LINE_BYTES} bytes")
    try:
        message = json.loads(line)
    except ValueError as error:  # bad UTF-8, bad JSON, or an integer too long to convert
        raise ProtocolError(BAD_REQUEST, f"not a JSON line: {error}") from None
    except RecursionError:
        raise ProtocolError(BAD_REQUEST, "not a JSON line: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object")
    return message


def ok(**fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "ok": True, **fields}


def error(code: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "error": {"code": code, "message": message, **fields}}
