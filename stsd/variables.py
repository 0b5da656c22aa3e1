"""The environment variables stsd sets, clears, refuses or keeps out of sight: one definition for the
daemon's replies, project files' [env], the shell transition and the daemon's own start-up environment.
Standard library only, no regular expressions: the hook's fast path imports this on every transition."""

from __future__ import annotations

# The temporary credentials a project's shell gets; secret ones are never kept in the environment of
# anything but the shell they are for (saved values of these go to a private file, not __STSD_STATE).
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_VARIABLES = frozenset(
    {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}
)
EXPIRATION_VARIABLE = "AWS_CREDENTIAL_EXPIRATION"
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
# Unset while a project's keys are exported: each would otherwise beat or shadow them in some SDK.
CLEARED_VARIABLES = (*PROFILE_VARIABLES, "AWS_SECURITY_TOKEN")
PROMPT_NAME_VARIABLE = "STSD_PROFILE"  # a short name of the loaded project, for prompts

# How a project's processes get credentials (`credentials =` in .stsd.toml and the daemon's config.toml):
# exported key variables, or the daemon's loopback endpoint through the SDKs' container provider.
ENV_MODE = "env"
ENDPOINT_MODE = "endpoint"
CREDENTIAL_MODES = (ENV_MODE, ENDPOINT_MODE)

# Endpoint mode: SDKs fetch credentials from the daemon's loopback endpoint (the container provider).
CONTAINER_URI_VARIABLE = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
CONTAINER_TOKEN_VARIABLE = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
CONTAINER_TOKEN_FILE_VARIABLE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
# Every variable of the container provider: env mode clears them all (a stale URI would be used by an SDK
# before nothing, but after the keys it is harmless; a RELATIVE_URI beats a FULL_URI in every SDK).
CONTAINER_VARIABLES = (
    CONTAINER_URI_VARIABLE,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    CONTAINER_TOKEN_VARIABLE,
    CONTAINER_TOKEN_FILE_VARIABLE,
)
# Unset in endpoint mode: environment credentials and profiles come before the container provider in
# every SDK's chain, so any of them would silently win over the endpoint.
ENDPOINT_CLEARED_VARIABLES = (*CREDENTIAL_VARIABLES, EXPIRATION_VARIABLE, *CLEARED_VARIABLES)

# Variables stsd sets or clears itself, or that would redirect where an SDK takes credentials from:
# a project's [env] must not set them (they would mix another identity into the project's shell).
MANAGED_VARIABLES = frozenset(
    {
        *CREDENTIAL_VARIABLES,
        EXPIRATION_VARIABLE,
        *CLEARED_VARIABLES,
        "AWS_ACCOUNT_ID",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CREDENTIAL_PROCESS",
        "AWS_CREDENTIAL_FILE",  # botocore's Ec2Config provider: keys from the old EC2 tools' file
        "AWS_LOGIN_CACHE_DIRECTORY",  # botocore: where `aws login` session tokens are read from
    }
)
# AWS_BEARER_TOKEN_<SERVICE>: a bearer token botocore sends instead of signing (a secret, another identity)
MANAGED_PREFIXES = ("AWS_CONTAINER_", "AWS_EC2_METADATA_", "AWS_SSO_", "AWS_BEARER_TOKEN_")

# Variables a project's [env] may set that send AWS requests (or data about them) elsewhere, or make a tool
# run or load something: `stsd allow` shows each one before trusting a file. From botocore's and the AWS
# CLI's sources; only those that can reach beyond AWS's own endpoints (FIPS, dual-stack or regional
# endpoint switches choose among AWS's hosts and are not listed). Name -> why it matters.
_REDIRECTS = "redirects AWS requests"
RISKY_VARIABLES = {
    "AWS_ENDPOINT_URL": _REDIRECTS,
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "changes which endpoint AWS requests go to",
    "AWS_CA_BUNDLE": "changes which certificates AWS requests trust",
    "AWS_DATA_PATH": "loads service models and data from these paths",
    "AWS_PAGER": "runs a program on AWS CLI output",
    "AWS_CLI_HISTORY_FILE": "records AWS CLI commands and responses in this file",
    "AWS_TEST_COMMAND": "runs this command as aws in the AWS CLI's test helpers",
}
RISKY_PREFIXES = {
    "AWS_ENDPOINT_URL_": _REDIRECTS,
    "AWS_CSM_": "client-side monitoring: sends data about AWS requests to a host",
}

# What a daemon started by a client must not inherit from the starting shell: credentials (a project's or
# the user's, which would become a source nobody configured), profile selectors (a stale AWS_PROFILE would
# break every request for the daemon's whole life) and the interpreter's PYTHON* settings. The user's own
# AWS_CONFIG_FILE, endpoints, CA bundle, metadata and proxy settings are kept: the daemon honours them.
NOT_INHERITED_BY_DAEMON = frozenset(
    {
        *CREDENTIAL_VARIABLES,
        EXPIRATION_VARIABLE,
        *CLEARED_VARIABLES,
        PROMPT_NAME_VARIABLE,
        "AWS_ACCOUNT_ID",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    }
)
NOT_INHERITED_PREFIXES = ("AWS_CONTAINER_", "__STSD_", "PYTHON")

_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_name_with_prefix(name: str, prefix: str) -> bool:
    return len(name) > len(prefix) and name.startswith(prefix) and set(name) <= _NAME_CHARACTERS


def is_aws_variable(name: str) -> bool:
    """`AWS_` followed by upper-case letters, digits and underscores: the only names [env] may set."""
    return _is_name_with_prefix(name, "AWS_")


def risk_of(name: str) -> str:
    """Why setting `name` deserves a look before trusting a file (see RISKY_VARIABLES), or ""."""
    if name in RISKY_VARIABLES:
        return RISKY_VARIABLES[name]
    for prefix, why in RISKY_PREFIXES.items():
        if name.startswith(prefix):
            return why
    return ""


def is_applicable(name: str) -> bool:
    """Whether a client may apply `name` from a daemon reply: the AWS_* variables stsd may set and its own
    STSD_* ones. Anything else (PROMPT_COMMAND, LD_PRELOAD, PATH...) in a reply is a protocol error."""
    return is_aws_variable(name) or _is_name_with_prefix(name, "STSD_")


def daemon_environment(environ: dict[str, str]) -> dict[str, str]:
    """`environ` less what a daemon must not inherit (see NOT_INHERITED_BY_DAEMON)."""
    return {
        name: value
        for name, value in environ.items()
        if name not in NOT_INHERITED_BY_DAEMON and not name.startswith(NOT_INHERITED_PREFIXES)
    }
