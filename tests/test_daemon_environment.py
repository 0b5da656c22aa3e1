"""`stsd status` shows the variables the daemon reads that are set in its environment (the one list in
stsd/daemon/environment.py): secrets hidden, passwords in proxy URLs replaced. The list itself is checked
against botocore's source, so a misspelt name cannot sit in it unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import botocore
import botocore.session
import psutil
import pytest
from conftest import REPO, Daemon, World, ask_daemon

from stsd.daemon.environment import DAEMON_VARIABLES, HIDDEN, HIDDEN_VALUE, effective_environment, redact_url

STSD_OWN = {"HOME", "STSD_SOCKET", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"}
NOT_BOTOCORE = {"AWS_REGION"}  # read by stsd itself (the fallback region), not by botocore


def test_every_variable_is_listed_once_with_a_reason() -> None:
    names = [name for name, _ in DAEMON_VARIABLES]
    assert len(names) == len(set(names))
    assert all(why.strip() for _, why in DAEMON_VARIABLES)
    assert set(names) >= HIDDEN
    assert set(names) >= STSD_OWN


def _botocore_source() -> str:
    root = Path(botocore.__file__).parent
    return "\n".join(path.read_text(errors="replace") for path in root.glob("*.py"))


def test_every_aws_variable_listed_is_one_botocore_reads() -> None:
    source = _botocore_source()
    prefix = "AWS_ENDPOINT_URL_"
    endpoint_services = {
        botocore.session.Session().get_service_model(name).service_id.hyphenize().upper().replace("-", "_")
        for name in ("sts", "sso", "sso-oidc", "signin")
    }
    for name, _ in DAEMON_VARIABLES:
        if name.startswith(prefix):
            # botocore builds these names from the service id (configprovider.py, _get_service_env_var_name)
            assert name[len(prefix) :] in endpoint_services, name
        elif name.startswith("AWS_") and name not in NOT_BOTOCORE:
            assert f"'{name}'" in source or f'"{name}"' in source, f"botocore never reads {name}"


def test_effective_environment_hides_secrets_and_passwords() -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "HTTPS_PROXY": "http://alice:s3cret@proxy.example:3128/",
        "http_proxy": "alice:s3cret@proxy.example:3128",
        "NO_PROXY": "localhost,127.0.0.1",
        "AWS_ENDPOINT_URL_STS": "https://token@sts.example",
        "XDG_CONFIG_HOME": "relative/ignored",
        "XDG_DATA_HOME": "/data",
        "EDITOR": "vi",
    }
    shown = effective_environment(environ)
    assert shown == {
        "XDG_DATA_HOME": "/data",
        "AWS_ACCESS_KEY_ID": HIDDEN_VALUE,
        "AWS_SECRET_ACCESS_KEY": HIDDEN_VALUE,
        "AWS_ENDPOINT_URL_STS": "https://***@sts.example",
        "HTTPS_PROXY": "http://***@proxy.example:3128/",
        "http_proxy": "***@proxy.example:3128",
        "NO_PROXY": "localhost,127.0.0.1",
    }
    assert list(shown) == [name for name, _ in DAEMON_VARIABLES if name in shown]  # the list's order


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://proxy:3128", "http://proxy:3128"),
        ("http://u:p@proxy:3128", "http://***@proxy:3128"),
        ("http://u:p@w@proxy:3128/x@y", "http://***@proxy:3128/x@y"),
        ("u:p@proxy", "***@proxy"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_interpreter_variables_count_only_when_the_interpreter_reads_them(tmp_path: Path) -> None:
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from stsd.daemon.environment import effective_environment; "
        "print(sorted(effective_environment({'PYTHONPATH': '/x', 'LD_PRELOAD': '/y.so'})))"
    )
    isolated = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True
    )
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert isolated.stdout.strip() == "['LD_PRELOAD']"
    assert plain.stdout.strip() == "['LD_PRELOAD', 'PYTHONPATH']"


# -- the real daemon ---------------------------------------------------------------------------------------
PASSWORD = "pr0xy-pass-42"
SECRET = "not-a-real-secret-but-hidden-all-the-same"


@pytest.fixture
def daemon_with_settings(world: World) -> Iterator[Daemon]:
    daemon = Daemon(
        world,
        extra_env={
            # https only: the local STS is plain http, so this proxy is never used.
            "HTTPS_PROXY": f"http://alice:{PASSWORD}@proxy.invalid:3128",
            "no_proxy": "127.0.0.1,localhost",
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "AWS_SECRET_ACCESS_KEY": SECRET,
        },
    )
    yield daemon
    daemon.stop()


def test_status_shows_the_daemons_effective_environment(daemon_with_settings: Daemon, world: World) -> None:
    [credentials, status] = ask_daemon(
        world.socket, {"op": "credentials", "profile": "alice-sts"}, {"op": "status"}
    )
    assert credentials["ok"], credentials  # the settings shown are the ones it works with
    environment = status["daemon"]["environment"]
    assert environment["HTTPS_PROXY"] == "http://***@proxy.invalid:3128"
    assert environment["no_proxy"] == "127.0.0.1,localhost"
    assert environment["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert environment["AWS_SECRET_ACCESS_KEY"] == HIDDEN_VALUE
    assert environment["AWS_ENDPOINT_URL"] == world.env["AWS_ENDPOINT_URL"]
    assert environment["STSD_SOCKET"] == str(world.socket)
    assert environment["HOME"] == str(world.home)
    # PYTHONPATH (set for every test process) counts only if the daemon's interpreter reads it.
    isolated = "-I" in psutil.Process(status["daemon"]["pid"]).cmdline()
    assert environment.get("PYTHONPATH") == (None if isolated else str(REPO))
    assert "EDITOR" not in environment and "PATH" not in environment  # only what the daemon reads
    raw = json.dumps(status)
    assert PASSWORD not in raw and SECRET not in raw

    text = world.stsd("status", cwd=str(world.home))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    env_lines = [line for line in lines if line.startswith("env       ")]
    assert env_lines and env_lines[0].startswith("env       HOME=")
    assert "          HTTPS_PROXY=http://***@proxy.invalid:3128" in lines
    assert f"          AWS_SECRET_ACCESS_KEY={HIDDEN_VALUE}" in lines
    assert PASSWORD not in text.stdout and SECRET not in text.stdout
