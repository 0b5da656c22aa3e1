"""The cold round's hook clients: many shells entering projects at the same moment, each asking as the
shell hook's process does (stsd.client.transition.ask_daemon: the `env` request stating its deadline,
the client's own timeout around it). Threads of a few processes rather than a process per client: a
thousand Python start-ups at once on a small machine would measure the machine, not the daemon; so the
wait is counted from the moment the client asks (a real hook's also counts its own start-up).

A client told `pending` (or that timed out) asks again at its "next prompt", NEXT_PROMPT_S later, until it
has credentials. Run by daemon_bench.py: argv = NEXT_PROMPT_S PROJECT_DIR..., STSD_SOCKET in the
environment; starts on a line on stdin; prints one JSON list, one object per client."""

from __future__ import annotations

import json
import sys
import threading
import time

from stsd.client import transition

MAX_ASKS = 20  # a client still without credentials after this many prompts is reported as failed


def _outcome(answer: object) -> str:
    if isinstance(answer, transition.Project):
        return "credentials"
    if isinstance(answer, transition.Pending):
        return answer.reason  # fetching, busy (queued past the deadline) or late (no answer in time)
    return f"failed: {answer!r}"


def client(directory: str, next_prompt_s: float, go: threading.Event, out: dict) -> None:
    project_file = f"{directory}/.stsd.toml"
    go.wait()
    began = time.monotonic()
    waits: list[float] = []
    outcomes: list[str] = []
    while len(outcomes) < MAX_ASKS:
        started = time.monotonic()
        answer = transition.ask_daemon(directory, project_file, "bash", started=started)
        waits.append(time.monotonic() - started)
        outcomes.append(_outcome(answer))
        if not isinstance(answer, transition.Pending):
            break
        time.sleep(next_prompt_s)
    # From the moment everyone asked to the answer with credentials (None: never).
    after = time.monotonic() - began if outcomes[-1] == "credentials" else None
    out.update(waits=waits, outcomes=outcomes, credentials_after=after)


def main(next_prompt_s: str, *directories: str) -> None:
    go = threading.Event()
    results: list[dict] = [{} for _ in directories]
    threads = [
        threading.Thread(target=client, args=(directory, float(next_prompt_s), go, result))
        for directory, result in zip(directories, results)
    ]
    for thread in threads:
        thread.start()
    sys.stdin.readline()
    go.set()
    for thread in threads:
        thread.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
