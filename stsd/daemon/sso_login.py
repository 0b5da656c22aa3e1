"""`stsd login [PROFILE]`: sign in to an SSO profile's portal with the OAuth device-authorization flow, through
botocore's sso-oidc client, and write the token to the cache `aws sso login` writes (same file, same
format: botocore's SSOTokenLoader), so users without the AWS CLI v2 are served too. The daemon picks the
new token up from the cache file like any other (stsd.daemon.sso); it is not asked."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session
from botocore import UNSIGNED
from botocore import exceptions as boto_errors
from botocore.utils import JSONFileCache, SSOTokenLoader

from stsd import terminal
from stsd.daemon.clock import utc_text
from stsd.daemon.sources import SSO, aws_config, profile_kind
from stsd.daemon.sso import SsoSettings, sso_settings, token_cache_dir, token_json
from stsd.daemon.sts_errors import one_line

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPES = ("sso:account:access",)
SLOW_DOWN_STEP_S = 5  # RFC 8628: on slow_down, poll 5 s less often


class LoginError(Exception):
    """One line for the user."""


def sso_profile_of(name: str, config: dict[str, Any]) -> str:
    """`name` if it is an SSO profile, else the SSO profile at the end of its source_profile chain."""
    profiles = config.get("profiles", {})
    seen: list[str] = []
    while name not in seen:
        seen.append(name)
        profile = profiles.get(name)
        if profile is None:
            raise LoginError(f"profile {name!r} is not in your AWS config")
        if profile_kind(profile) == SSO:
            return name
        if "source_profile" not in profile:
            break
        name = str(profile["source_profile"])
    raise LoginError(f"profile {seen[0]!r} does not sign in with SSO (no sso_session or sso_start_url)")


def sign_in(
    profile: str,
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> tuple[SsoSettings, datetime]:
    """Run the device-authorization flow for `profile`'s sign-in; return where and until when."""
    config = aws_config()
    settings = sso_settings(profile, config)
    profile_config = config.get("profiles", {}).get(profile, {})
    section = (
        config.get("sso_sessions", {}).get(settings.sso_session, {})
        if settings.sso_session is not None
        else profile_config
    )
    region = section.get("sso_region")
    if settings.start_url is None or region is None:
        raise LoginError(f"profile {profile!r}: expected sso_start_url and sso_region for its sign-in")
    scopes = [s.strip() for s in str(section.get("sso_registration_scopes", "")).split(",") if s.strip()]
    # A session of the profile: its endpoint and CA settings apply, as to `aws sso login --profile NAME`.
    client = botocore.session.Session(profile=profile).create_client(
        "sso-oidc",
        region_name=str(region),
        config=botocore.config.Config(signature_version=UNSIGNED, connect_timeout=5, read_timeout=15),
    )
    try:
        registration = client.register_client(
            clientName=f"stsd-{socket.gethostname().split('.')[0] or 'host'}",
            clientType="public",
            **({"scopes": scopes or list(DEFAULT_SCOPES)} if settings.sso_session is not None else {}),
        )
        authorization = client.start_device_authorization(
            clientId=registration["clientId"],
            clientSecret=registration["clientSecret"],
            startUrl=settings.start_url,
        )
        say(
            f"stsd: to sign in to {settings.start_url}, open {authorization['verificationUriComplete']} "
            f"and confirm the code {authorization['userCode']}"
        )
        token = _wait_for_token(client, registration, authorization, sleep=sleep, now=now)
    except (boto_errors.BotoCoreError, boto_errors.ClientError) as error:
        raise LoginError(f"sign-in to {settings.start_url} failed: {one_line(error)}") from None
    expires = now() + timedelta(seconds=int(token["expiresIn"]))
    cached: dict[str, Any] = {
        "startUrl": settings.start_url,
        "region": str(region),
        "accessToken": token["accessToken"],
        "expiresAt": expires,
    }
    if settings.sso_session is not None:
        # With an sso-session, botocore refreshes the token later with these (as after `aws sso login`).
        cached.update(
            clientId=registration["clientId"],
            clientSecret=registration["clientSecret"],
            registrationExpiresAt=datetime.fromtimestamp(registration["clientSecretExpiresAt"], timezone.utc),
        )
        if "refreshToken" in token:
            cached["refreshToken"] = token["refreshToken"]
    directory = Path(token_cache_dir())
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    loader = SSOTokenLoader(cache=JSONFileCache(str(directory), dumps_func=token_json))
    loader.save_token(settings.start_url, cached, session_name=settings.sso_session)
    return settings, expires


def _wait_for_token(
    client: Any,
    registration: dict[str, Any],
    authorization: dict[str, Any],
    *,
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
) -> dict[str, Any]:
    interval = float(authorization.get("interval") or 5)
    deadline = now() + timedelta(seconds=int(authorization.get("expiresIn") or 600))
    while now() < deadline:
        sleep(interval)
        try:
            return dict(
                client.create_token(
                    grantType=DEVICE_GRANT,
                    deviceCode=authorization["deviceCode"],
                    clientId=registration["clientId"],
                    clientSecret=registration["clientSecret"],
                )
            )
        except client.exceptions.AuthorizationPendingException:
            continue
        except client.exceptions.SlowDownException:
            interval += SLOW_DOWN_STEP_S
    raise LoginError("the code was not confirmed in time; run stsd login again")


def cmd_login(args: argparse.Namespace) -> int:
    """`stsd login [PROFILE]`: PROFILE, else the profile of the project governing the current directory."""
    try:
        name = args.profile or _project_profile()
        profile = sso_profile_of(name, dict(aws_config()))
        settings, expires = sign_in(profile, say=lambda line: print(terminal.printable(line), flush=True))
    except (LoginError, boto_errors.BotoCoreError) as error:
        print(f"stsd: {terminal.printable(one_line(error))}", file=sys.stderr)
        return 1
    where = f"sso-session {settings.sso_session}" if settings.sso_session else f"profile {profile}"
    print(f"stsd: signed in ({where}) until {utc_text(expires)}")
    return 0


def _project_profile() -> str:
    from stsd.client.commands import logical_path
    from stsd.project.projectfile import ProjectFileError, find_project_file, load_project_file

    path = find_project_file(Path(logical_path(".")))
    if path is None:
        raise LoginError("no .stsd.toml here or above; name the profile: stsd login PROFILE")
    try:
        settings = load_project_file(path).settings
    except ProjectFileError as error:
        raise LoginError(str(error)) from None
    name = settings.profile or settings.source_profile
    if name is None:
        raise LoginError(f"{path} names no profile; name the SSO profile: stsd login PROFILE")
    return name
