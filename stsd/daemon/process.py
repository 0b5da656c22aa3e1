"""ProcessSource: a profile's credential_process, run by botocore's own ProcessProvider (its parsing, its
argv splitting, no shell) on every call; RenewAheadSource holds the answer until it is due, so the
process runs again only to renew."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import botocore.credentials
import botocore.session

from stsd.daemon.sources import (
    PROCESS,
    SourceCredentials,
    SourceError,
    SourceSpec,
    SourceStatus,
    credentials_of,
    expiry_of,
    source_failure,
)
from stsd.daemon.sts_errors import one_line

PROCESS_TIMEOUT_S = 60  # botocore waits for ever; a hung process must not hold a worker thread for good


class _TimedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """What botocore runs the process with: no stdin (the daemon's is nobody's terminal), and a time limit."""

    def __init__(self, args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        super().__init__(args, **kwargs)

    def communicate(self, input: Any = None, timeout: float | None = None) -> Any:
        try:
            return super().communicate(input, timeout=timeout or PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            super().communicate()
            raise


class ProcessSource:
    """A SourceProvider running a profile's credential_process each time it is asked."""

    def __init__(self, spec: SourceSpec) -> None:
        assert spec.profile is not None
        self.spec = spec
        self._lock = threading.Lock()
        self._error: str | None = None
        self.runs = 0  # times the process was started, for tests and status

    def generation(self) -> int:
        return 0  # a process answers anew each run; only the AWS files change what it is

    def credentials(self) -> SourceCredentials:
        spec = self.spec
        session = botocore.session.Session(profile=spec.profile)
        provider = botocore.credentials.ProcessProvider(
            profile_name=spec.profile, load_config=lambda: session.full_config, popen=_TimedPopen
        )
        with self._lock:
            self.runs += 1
        try:
            loaded = provider.load()
            if loaded is None:
                raise SourceError(f"source {spec.name}: no credential_process", transient=False)
            frozen = loaded.get_frozen_credentials()
        except SourceError as error:
            self._record(error.message)
            raise
        except subprocess.TimeoutExpired:
            failure = SourceError(
                f"source {spec.name}: credential_process gave no answer within {PROCESS_TIMEOUT_S} s",
                transient=True,
            )
            self._record(failure.message)
            raise failure from None
        except ValueError as error:  # stdout is not JSON
            failure = SourceError(
                f"source {spec.name}: credential_process printed no JSON: {one_line(error)}", transient=True
            )
            self._record(failure.message)
            raise failure from None
        except Exception as error:
            failure = source_failure(spec, error)
            self._record(failure.message)
            raise failure from None
        expiration = expiry_of(loaded)
        self._record(None)
        return credentials_of(frozen, PROCESS, expiration)

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(self.spec.name, PROCESS, None, self._error, None)

    def _record(self, error: str | None) -> None:
        with self._lock:
            self._error = error
