"""Trust records: allow binds path + content, deny binds the path, writes are atomic and private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stsd.project.trust import TrustState, TrustStore

REPO = Path(__file__).resolve().parent.parent
PROJECT = Path("/home/alice/project/.stsd.toml")
CONTENT = b'profile = "alice-sts"\n'
EDITED = b'profile = "alice-admin"\n'


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "data" / "stsd" / "trust")


def every_file(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_new_file_is_untrusted(store: TrustStore) -> None:
    assert store.state(PROJECT, CONTENT) is TrustState.UNTRUSTED


def test_allowed_file_is_trusted_until_edited(store: TrustStore) -> None:
    store.allow(PROJECT, CONTENT)

    assert store.state(PROJECT, CONTENT) is TrustState.ALLOWED
    assert store.state(PROJECT, EDITED) is TrustState.UNTRUSTED


def test_trust_is_bound_to_the_path(store: TrustStore) -> None:
    store.allow(PROJECT, CONTENT)

    assert store.state(Path("/home/alice/other/.stsd.toml"), CONTENT) is TrustState.UNTRUSTED


def test_denial_survives_edits(store: TrustStore) -> None:
    store.allow(PROJECT, CONTENT)
    store.deny(PROJECT)

    assert store.state(PROJECT, CONTENT) is TrustState.DENIED
    assert store.state(PROJECT, EDITED) is TrustState.DENIED


def test_allow_after_deny_trusts_the_current_content(store: TrustStore) -> None:
    store.deny(PROJECT)
    store.allow(PROJECT, EDITED)

    assert store.state(PROJECT, EDITED) is TrustState.ALLOWED
    assert store.state(PROJECT, b"something else") is TrustState.UNTRUSTED


def test_another_store_on_the_same_root_reads_the_records(store: TrustStore) -> None:
    # The client writes, the daemon (same uid, its own TrustStore) reads.
    store.allow(PROJECT, CONTENT)
    store.deny(Path("/home/alice/denied/.stsd.toml"))
    daemon_side = TrustStore(store.root)

    assert daemon_side.state(PROJECT, CONTENT) is TrustState.ALLOWED
    assert daemon_side.state(Path("/home/alice/denied/.stsd.toml"), CONTENT) is TrustState.DENIED


def test_records_are_private_and_no_temporary_file_remains(store: TrustStore) -> None:
    store.allow(PROJECT, CONTENT)
    store.allow(PROJECT, EDITED)
    store.deny(Path("/elsewhere/.stsd.toml"))

    files = every_file(store.root)
    assert len(files) == 3
    assert not [f for f in store.root.rglob(".tmp-*")]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in [store.root, *(p for p in store.root.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_loose_trust_directory_is_made_private_again(store: TrustStore) -> None:
    store.allow(PROJECT, CONTENT)
    store.root.chmod(0o755)

    store.allow(PROJECT, EDITED)

    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


# -- failures: one clear line, nothing half-written ------------------------------------------------------

ATTEMPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from stsd.project.trust import TrustStore, TrustStoreError
    try:
        TrustStore(Path(sys.argv[1])).{call}
    except TrustStoreError as error:
        print(error)
        sys.exit(7)
    """
)


def run_as_user(code: str, root: Path, *, preexec=None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-c", code, str(root)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=preexec,
    )


def drop_file_permission_override() -> None:
    """root ignores file modes through CAP_DAC_OVERRIDE: drop it (and CAP_DAC_READ_SEARCH) from the child's
    capability bounding set, so after exec it meets modes as an ordinary user does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_trust_directory_gives_one_line_error_and_keeps_old_records(tmp_path: Path) -> None:
    root = tmp_path / "trust"
    TrustStore(root).allow(PROJECT, CONTENT)
    preexec = drop_file_permission_override if os.getuid() == 0 else None
    (root / "allowed").chmod(0o500)
    before = every_file(root)

    result = run_as_user(
        ATTEMPT.format(call=f"allow(Path({str(PROJECT)!r}), {EDITED!r})"), root, preexec=preexec
    )

    assert result.returncode == 7, result.stderr
    message = result.stdout.strip()
    assert "\n" not in message
    assert message.startswith(f"cannot record trust in {root / 'allowed'}: Permission denied;")
    assert every_file(root) == before
    assert TrustStore(root).state(PROJECT, CONTENT) is TrustState.ALLOWED


def test_full_disk_gives_one_line_error_and_leaves_no_partial_file(store: TrustStore) -> None:
    def file_size_limit_zero() -> None:
        # RLIMIT_FSIZE makes every write past 0 bytes fail (EFBIG) like a full disk, for this child only;
        # Python ignores SIGXFSZ, so the write reports the error instead of killing the process.
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    result = run_as_user(
        ATTEMPT.format(call=f"allow(Path({str(PROJECT)!r}), {CONTENT!r})"),
        store.root,
        preexec=file_size_limit_zero,
    )

    assert result.returncode == 7, result.stderr
    assert result.stdout.strip().startswith(
        f"cannot record trust in {store.root / 'allowed'}: File too large;"
    )
    assert every_file(store.root) == []
    assert store.state(PROJECT, CONTENT) is TrustState.UNTRUSTED
