"""The JSON-lines protocol between the daemon and its clients (docs/protocol.md): its version, limits, error
codes and the one error type (Refusal), declared once. Standard library only; `json` is imported where
used, so the lean client (stsd.wire, the hook) can take these without paying for it."""

from __future__ import annotations

TYPE_CHECKING = False  # the typing module costs milliseconds; annotations are strings here

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

VERSION = 1
MAX_LINE_BYTES = 64 * 1024  # requests are tiny; anything larger is refused, not buffered
# `env`'s optional fields: how long (ms) the asker waits for the reply, and when it asked (epoch seconds,
# the wall clock every process shares): time the request spent queued counts. A session still being
# fetched by then gets PENDING instead, and the fetch goes on for the next ask (the hook's next prompt).
WAIT_FIELD = "wait_ms"
ASKED_AT_FIELD = "asked_at"
BUSY_FIELD = "busy"  # on a `pending` reply: the request waited in the queue past its wait; nothing was done
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
BUSY = "busy"  # the daemon (or its credentials endpoint) has as many connections open as it takes
# Refusals a person cures elsewhere (a code, a sign-in) without touching the project: the hook asks again
# at the next prompt, and the daemon calls nothing meanwhile.
ASK_AGAIN_AT_NEXT_PROMPT = frozenset({MFA_REQUIRED, SIGN_IN_REQUIRED})
# Refusals only an edit of the project file or a trust decision can change: the hook watches for those.
WAIT_FOR_USER = frozenset({UNTRUSTED, DENIED, INVALID_PROJECT})
# Every code a reply on the socket may carry; `internal` is a bug by definition.
REPLY_CODES = frozenset(
    {
        BAD_REQUEST, TOO_LARGE, UNSUPPORTED_VERSION, UNKNOWN_OP, INVALID_PROJECT, UNTRUSTED, DENIED,
        UNKNOWN_PROFILE, SOURCE_ERROR, STS_DENIED, MFA_REQUIRED, SIGN_IN_REQUIRED, NO_MFA, STS_UNAVAILABLE,
        TIMEOUT, RENEW_LIMITED, INTERNAL, BUSY, PENDING,
    }
)  # fmt: skip
# Raised by clients, never sent: a reply that breaks the protocol (say, naming a variable stsd never sets).
BAD_REPLY = "bad_reply"
# The credentials endpoint's replies (HTTP, docs/protocol.md) add these to the codes above.
UNAUTHORIZED = "unauthorized"
FORBIDDEN_USER = "forbidden_user"
BAD_HOST = "bad_host"
BROWSER_REFUSED = "browser_refused"
RATE_LIMITED = "rate_limited"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"


class Refusal(Exception):
    """A refused request, the one error that travels from daemon to client: `code` one of the codes above
    (programs switch on it), `message` one line for a person, `fields` more members of the reply's error
    object (`project`, `forced_renewal_at`). Raised where the problem is found, answered by `reply()`, and
    rebuilt by the client from the reply (`of`)."""

    def __init__(self, code: str, message: str, /, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields

    def reply(self) -> dict[str, Any]:
        """The error reply that carries this refusal."""
        return error(self.code, self.message, **self.fields)

    @staticmethod
    def of(reply: Mapping[str, Any]) -> Refusal:
        """The refusal an error reply carries (a plain Refusal, whatever subclass the daemon raised); one
        with no error object is itself a bad reply."""
        body = reply.get("error")
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            return Refusal(BAD_REPLY, "the daemon sent an error reply without an error code; see its log")
        fields = {key: value for key, value in body.items() if key not in ("code", "message")}
        return Refusal(body["code"], str(body.get("message") or body["code"]), **fields)

    def __repr__(self) -> str:
        fields = "".join(f", {key}={value!r}" for key, value in self.fields.items())
        return f"{type(self).__name__}({self.code!r}, {self.message!r}{fields})"


def encode(message: dict[str, Any]) -> bytes:
    import json

    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line into a JSON object, or raise Refusal (bad_request, too_large)."""
    import json

    if len(line) > MAX_LINE_BYTES:
        raise Refusal(TOO_LARGE, f"message exceeds {MAX_LINE_BYTES} bytes")
    try:
        message = json.loads(line)
    except ValueError as error:  # bad UTF-8, bad JSON, or an integer too long to convert
        raise Refusal(BAD_REQUEST, f"not a JSON line: {error}") from None
    except RecursionError:
        raise Refusal(BAD_REQUEST, "not a JSON line: nested too deeply") from None
    if not isinstance(message, dict):
        raise Refusal(BAD_REQUEST, "a message must be a JSON object")
    return message


def ok(**fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "ok": True, **fields}


def error(code: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "error": {"code": code, "message": message, **fields}}
