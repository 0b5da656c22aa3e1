"""The project governing a directory, as `status` shows it: its file, name and trust, or why it is broken.
One answer for the daemon's `status` and for the client when no daemon runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stsd.project.projectfile import ProjectFileError, find_project_file, load_project_file
from stsd.project.trust import TrustStore


def governing_project(directory: Path, trust: TrustStore) -> dict[str, Any] | None:
    """`{path, name, trust}`, `{path, error}` for a broken file, or None when no `.stsd.toml` governs."""
    path = find_project_file(directory)
    if path is None:
        return None
    try:
        project = load_project_file(path)
    except ProjectFileError as error:
        return {"path": str(path), "error": str(error)}
    return {
        "path": str(project.path),
        "name": project.name,
        "trust": trust.state(project.path, project.content).value,
    }
