"""A daemon that cannot harden itself does not run: a failing prctl(PR_SET_DUMPABLE) or setrlimit(RLIMIT_CORE)
stops `stsd serve` (and `stsd start`) with one clear line, as ssh-agent does. The failures come from a
small LD_PRELOAD library compiled here, in front of libc, in a real daemon process: the kernel refuses
neither call to root or to an ordinary user, so this is the only way to see the refusal handled."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("gcc") is None, reason="needs Linux and gcc"
)

FAIL_VARIABLE = "STSD_TEST_SHIM_FAIL"  # which call the shim refuses: "prctl" or "setrlimit"

_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int failing(const char *what) {
    const char *fail = getenv("STSD_TEST_SHIM_FAIL")  /* FAIL_VARIABLE */;
    return fail != NULL && strcmp(fail, what) == 0;
}

int prctl(int option, ...) {
    unsigned long a[4];
    va_list ap;
    va_start(ap, option);
    for (int i = 0; i < 4; i++) a[i] = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == 4 /* PR_SET_DUMPABLE */ && failing("prctl")) { errno = EPERM; return -1; }
    int (*real)(int, ...) = (int (*)(int, ...))dlsym(RTLD_NEXT, "prctl");
    return real(option, a[0], a[1], a[2], a[3]);
}

static int set_limit(const char *name, int resource, const void *limit) {
    if (resource == 4 /* RLIMIT_CORE */ && failing("setrlimit")) { errno = EPERM; return -1; }
    int (*real)(int, const void *) = (int (*)(int, const void *))dlsym(RTLD_NEXT, name);
    return real(resource, limit);
}
int setrlimit(int resource, const void *limit) { return set_limit("setrlimit", resource, limit); }
int setrlimit64(int resource, const void *limit) { return set_limit("setrlimit64", resource, limit); }
"""

# The one line each failure gives: what failed, why (as the C library or Python puts it), and the verdict.
MESSAGES = {
    "prctl": re.compile(
        r"stsd: cannot make the daemon undumpable: prctl\(PR_SET_DUMPABLE, 0\) failed: Operation not "
        r"permitted; the daemon does not run without it \(other processes of yours could read its memory\)"
    ),
    # CPython reports EPERM from setrlimit as "not allowed to raise maximum limit".
    "setrlimit": re.compile(
        r"stsd: cannot disable core dumps \(setrlimit RLIMIT_CORE 0\): [^;]+; the daemon does not run without it"
    ),
}


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("shim")
    source = directory / "shim.c"
    source.write_text(_SHIM)
    library = directory / "shim.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return library


@pytest.mark.parametrize("failing", sorted(MESSAGES))
def test_serve_stops_with_one_clear_line_when_hardening_fails(world: World, shim: Path, failing: str) -> None:
    env = {**world.env, "LD_PRELOAD": str(shim), FAIL_VARIABLE: failing}
    result = subprocess.run(
        [sys.executable, "-m", "stsd", "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1, result
    [line] = result.stderr.strip().splitlines()
    assert MESSAGES[failing].fullmatch(line), line
    assert not world.socket.exists()  # stopped before it listened


def test_start_reports_the_hardening_failure(world: World, shim: Path) -> None:
    env = {**world.env, "LD_PRELOAD": str(shim), FAIL_VARIABLE: "prctl"}
    result = subprocess.run(
        [sys.executable, "-m", "stsd", "start"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result
    assert MESSAGES["prctl"].search(result.stderr), result.stderr
    assert MESSAGES["prctl"].search((world.state / "stsd.log").read_text())


def test_the_shim_alone_changes_nothing(world: World, shim: Path) -> None:
    # The same library, refusing nothing: the daemon hardens itself through it and serves.
    daemon = Daemon(world, extra_env={"LD_PRELOAD": str(shim)})
    try:
        [reply] = ask_daemon(world.socket, {"op": "ping"})
        assert reply["ok"]
    finally:
        assert daemon.stop() == 0
    assert "cannot" not in daemon.log
