"""Fuzzing .stsd.toml parsing (hypothesis): arbitrary bytes and TOML documents built from the real keys
with wrong, odd or hostile values. The parser returns a ProjectFile or raises ProjectFileError with one
line naming the file, nothing else; the daemon answers such files with a well-formed reply."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, World, ask_daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stsd.project.projectfile import ALLOWED_KEYS, ProjectFile, ProjectFileError, load_project_file
from stsd.project.trust import TrustStore

from .test_fuzz_protocol import assert_well_formed

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- a small TOML writer for the generated documents (the standard library only reads TOML) ---------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string for printable text
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(top: dict[str, Any], env: dict[str, Any] | None) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in top.items()]
    if env is not None:
        lines.append("[env]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.text(max_size=80),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.sampled_from(
        [
            "alice-sts",
            "arn:aws:iam::123456789012:role/alice-sts",
            "us-east-1",
            "Ec2InstanceMetadata",
            "a" * 2000,
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(ALLOWED_KEYS), st.text(min_size=1, max_size=20))
env_names = st.one_of(
    st.sampled_from(
        [
            "AWS_DEFAULT_OUTPUT",
            "AWS_PAGER",
            "PATH",
            "LD_PRELOAD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
        ]
    ),
    st.from_regex(r"AWS_[A-Z0-9_]{1,20}", fullmatch=True),
    st.text(min_size=1, max_size=20),
)
documents = st.builds(
    toml_document,
    st.dictionaries(keys, values, max_size=6),
    st.none() | st.dictionaries(env_names, values, max_size=4),
)


def _check(path: Path) -> ProjectFile | None:
    try:
        return load_project_file(path)
    except ProjectFileError as error:
        message = str(error)
        assert message.startswith(str(path)), message
        assert "\n" not in message and "\r" not in message, message
        return None


@FUZZ
@given(content=st.binary(max_size=4096))
def test_arbitrary_bytes_parse_or_fail_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("bytes") / ".stsd.toml"
    path.write_bytes(content)
    _check(path)


@FUZZ
@given(text=documents)
def test_generated_documents_parse_or_fail_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("doc") / ".stsd.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    project = _check(path)
    if project is not None:
        # Whatever passes is clean: only AWS_* extras that stsd does not manage, all strings.
        for name, value in project.env.items():
            assert name.startswith("AWS_") and isinstance(value, str)
            assert name not in (
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_PROFILE",
            )


def test_daemon_answers_fuzzed_project_files_well_formed(world: World, daemon: Daemon) -> None:
    counter = iter(range(10**6))

    trust = TrustStore(Path(world.env["XDG_DATA_HOME"]) / "stsd" / "trust")

    @settings(FUZZ, max_examples=30)
    @given(text=documents)
    def run(text: str) -> None:
        project = world.home / "fuzz" / str(next(counter))
        project.mkdir(parents=True)
        path = project / ".stsd.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        # Trusted as written (what `stsd allow` records), so the daemon goes past trust into validation.
        trust.allow(path, path.read_bytes())
        [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(project)})
        assert_well_formed(reply, text)

    run()
    [pong] = ask_daemon(world.socket, {"op": "ping"})
    assert pong["ok"] and "Traceback" not in daemon.log


@pytest.mark.slow
@settings(FUZZ, max_examples=5000)
@given(
    content=st.one_of(st.binary(max_size=8192), documents.map(lambda t: t.encode("utf-8", "surrogatepass")))
)
def test_long_fuzz_of_project_files(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("long") / ".stsd.toml"
    path.write_bytes(content)
    _check(path)
