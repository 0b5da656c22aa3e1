"""The project governing a directory, as `status` shows it: its file, name and trust, or why it is broken,
and which other users' files were passed over. One answer for the daemon's `status` and for the client
when no daemon runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stsd.project.discovery import discover, ignored_message
from stsd.project.projectfile import ProjectFileError, load_project_file
from stsd.project.trust import TrustStore


def governing_project(directory: Path, trust: TrustStore) -> dict[str, Any] | None:
    """`{path, name, trust}`, `{path, error}` for a broken file, or None when no `.stsd.toml` governs.
    Files passed over because another user owns them add `ignored`: one line each, nearest first (with
    `path` None when nothing else governs)."""
    found, passed_over = discover(str(directory))
    ignored = (
        {"ignored": [ignored_message(path, owner) for path, owner in passed_over]} if passed_over else {}
    )
    if not found:
        return {"path": None, **ignored} if ignored else None
    try:
        project = load_project_file(Path(found))
    except ProjectFileError as error:
        return {"path": found, "error": str(error), **ignored}
    return {
        "path": str(project.path),
        "name": project.name,
        "trust": trust.state(project.path, project.content).value,
        **ignored,
    }
