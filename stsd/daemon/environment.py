"""The environment variables the daemon reads, each with why it matters: one list, for `stsd status` (which
shows those that are set) and for the README to be checked against. Taken from stsd's own code and from
botocore's (configprovider.py, credentials.py, utils.py, httpsession.py, session.py) as the daemon uses it:
sources resolved per profile, an STS client with its own timeouts and a single attempt.

What a daemon started by a client does not inherit at all is stsd.variables.NOT_INHERITED_BY_DAEMON."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_STS_ONLY = "stsd's own AssumeRole makes one attempt and backs off itself"

DAEMON_VARIABLES: tuple[tuple[str, str], ...] = (
    # -- where stsd keeps things
    ("HOME", "home of ~/.aws and of the XDG directories' defaults"),
    ("XDG_CONFIG_HOME", "stsd/config.toml: the daemon's settings"),
    ("XDG_DATA_HOME", "stsd/trust: which project files are allowed or denied"),
    ("XDG_STATE_HOME", "stsd/stsd.log: the log of a daemon started by `stsd start`"),
    ("XDG_RUNTIME_DIR", "stsd/stsd.sock: the socket, unless STSD_SOCKET names another"),
    ("STSD_SOCKET", "the socket clients reach the daemon on"),
    # -- where source credentials and profiles come from
    ("AWS_CONFIG_FILE", "the AWS config file: profiles, roles and sources (default ~/.aws/config)"),
    ("AWS_SHARED_CREDENTIALS_FILE", "the AWS credentials file: source keys (default ~/.aws/credentials)"),
    ("AWS_DEFAULT_PROFILE", "as AWS_PROFILE, and read before it"),
    ("AWS_PROFILE", "the profile whose endpoint and CA settings a role with no profile (inline) follows"),
    ("AWS_ACCESS_KEY_ID", "credential_source = Environment: the source's keys"),
    ("AWS_SECRET_ACCESS_KEY", "credential_source = Environment: the source's keys"),
    ("AWS_SESSION_TOKEN", "credential_source = Environment: the source's session token"),
    ("AWS_SECURITY_TOKEN", "credential_source = Environment: the source's session token (old name)"),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "credential_source = EcsContainer: where the credentials are"),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "credential_source = EcsContainer: where the credentials are"),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "credential_source = EcsContainer: the token sent for them"),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "credential_source = EcsContainer: the file of that token"),
    ("AWS_LOGIN_CACHE_DIRECTORY", "where sources signed in with `aws login` keep their tokens"),
    # -- the instance metadata service (credential_source = Ec2InstanceMetadata)
    ("AWS_EC2_METADATA_DISABLED", "true: the instance metadata service is never asked"),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "where the instance metadata service is asked"),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4 or IPv6 instance metadata endpoint"),
    ("AWS_IMDS_USE_IPV6", "IPv6 instance metadata endpoint (the MODE variable wins)"),
    ("AWS_EC2_METADATA_V1_DISABLED", "true: no fallback to IMDSv1"),
    ("AWS_METADATA_SERVICE_TIMEOUT", "seconds to wait for the instance metadata or container service"),
    ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "attempts at the instance metadata or container service"),
    # -- where AWS requests go, and what they trust
    ("AWS_REGION", "the region when neither the project, its profile nor config.toml names one"),
    ("AWS_DEFAULT_REGION", "as AWS_REGION, read after it; botocore's region for chained and SSO sources"),
    ("AWS_ENDPOINT_URL", "every AWS request (STS, SSO) goes here; beats endpoint_url of the AWS config"),
    ("AWS_ENDPOINT_URL_STS", "STS requests go here; beats AWS_ENDPOINT_URL and the AWS config"),
    ("AWS_ENDPOINT_URL_SSO", "SSO requests of SSO sources go to this endpoint instead of AWS"),
    ("AWS_ENDPOINT_URL_SSO_OIDC", "SSO token refreshes go to this endpoint instead of AWS"),
    ("AWS_ENDPOINT_URL_SIGNIN", "`aws login` token refreshes go to this endpoint instead of AWS"),
    ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true: endpoint URLs of the environment and config unused"),
    ("AWS_STS_REGIONAL_ENDPOINTS", "legacy: us-east-1 STS requests go to the global endpoint"),
    ("AWS_USE_FIPS_ENDPOINT", "true: FIPS endpoints of AWS"),
    ("AWS_USE_DUALSTACK_ENDPOINT", "true: dual-stack (IPv6) endpoints of AWS"),
    ("AWS_CA_BUNDLE", "the certificates AWS requests trust; beats ca_bundle of the AWS config"),
    ("AWS_DATA_PATH", "directories botocore loads service models and endpoint rules from"),
    ("AWS_CSM_ENABLED", "client-side monitoring: a report of each AWS call is sent over UDP"),
    ("AWS_CSM_HOST", "where client-side monitoring reports go"),
    ("AWS_CSM_PORT", "where client-side monitoring reports go"),
    ("HTTPS_PROXY", "proxy of AWS requests (botocore reads https_proxy first)"),
    ("https_proxy", "proxy of AWS requests"),
    ("HTTP_PROXY", "proxy of plain-HTTP requests: instance metadata, container credentials"),
    ("http_proxy", "proxy of plain-HTTP requests: instance metadata, container credentials"),
    ("NO_PROXY", "hosts reached without the proxy"),
    ("no_proxy", "hosts reached without the proxy"),
    # -- retries of botocore's own calls
    ("AWS_MAX_ATTEMPTS", f"attempts of botocore's calls for chained-role and SSO sources; {_STS_ONLY}"),
    ("AWS_RETRY_MODE", f"retry mode of botocore's calls for chained-role and SSO sources; {_STS_ONLY}"),
    ("AWS_DEFAULTS_MODE", "botocore's default retry mode and timeouts for chained-role and SSO sources"),
    # -- what code runs in the daemon
    ("LD_PRELOAD", "libraries the dynamic linker loads into the daemon before any other"),
    ("LD_LIBRARY_PATH", "directories searched first for the daemon's libraries"),
    ("PYTHONPATH", "directories imported from first (ignored when the daemon runs isolated, python -I)"),
    ("PYTHONHOME", "the Python installation used (ignored when the daemon runs isolated, python -I)"),
)

# Shown as set, never with their value: secrets.
HIDDEN = frozenset(
    {
        "AWS_ACCESS_KEY_ID",  # not a secret itself, but it names a long-term key that never leaves the daemon
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    }
)
HIDDEN_VALUE = "(set; value hidden)"
# URLs whose user:password part is replaced: proxies carry them, and any endpoint may.
_URLS = frozenset(
    {
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    }
)
_URL_PREFIXES = ("AWS_ENDPOINT_URL",)
_XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
_INTERPRETER = ("PYTHONPATH", "PYTHONHOME")


def effective_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of DAEMON_VARIABLES that are set and take effect, in that order: secrets hidden,
    passwords in URLs replaced."""
    shown: dict[str, str] = {}
    for name, _why in DAEMON_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        if name in _XDG and not os.path.isabs(value):
            continue  # the XDG spec: a relative value is invalid and ignored (stsd.paths does)
        if name in _INTERPRETER and sys.flags.ignore_environment:
            continue
        if name in HIDDEN:
            shown[name] = HIDDEN_VALUE
        elif name in _URLS or name.startswith(_URL_PREFIXES):
            shown[name] = redact_url(value)
        else:
            shown[name] = value
    return shown


def redact_url(url: str) -> str:
    """`url` with any user:password (or token) before the host replaced by `***`."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url  # "user:pw@proxy:3128": botocore puts http:// in front itself
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{separator}{authority}{slash}{path}"
