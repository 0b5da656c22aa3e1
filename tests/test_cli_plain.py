"""The hand-parsed plain forms of `credential-process`, `env` and `exec` (which skip argparse for speed)
mean exactly what argparse makes of them, and every other form is left to argparse."""

from __future__ import annotations

import pytest

from stsd.cli import build_parser, plain_arguments

PLAIN = [
    ["credential-process", "alice-sts"],
    ["credential-process", "./proj"],
    ["credential-process", "--profile", "alice-sts"],
    ["credential-process", "--dir", "~/proj"],
    ["env"],
    ["env", "--json"],
    ["env", "/home/alice/proj"],
    ["env", "--json", "proj"],
    ["exec", "--", "aws", "s3", "ls"],
    ["exec", "--dir", "proj", "--", "env"],
    ["exec", "--", "cmd", "--dir", "x"],
]
LEFT_TO_ARGPARSE = [
    [],
    ["credential-process"],
    ["credential-process", "--help"],
    ["credential-process", "--profile=alice-sts"],
    ["credential-process", "--profile", "a", "b"],
    ["env", "--json", "a", "b"],
    ["env", "-h"],
    ["exec"],
    ["exec", "aws"],
    ["exec", "--dir", "--", "x"],
    ["status"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_forms_parse_as_argparse_parses_them(argv: list[str]) -> None:
    plain = plain_arguments(argv)
    assert plain is not None
    assert vars(plain) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=lambda argv: " ".join(argv) or "(none)")
def test_other_forms_are_left_to_argparse(argv: list[str]) -> None:
    assert plain_arguments(argv) is None
