"""Real interactive shells under a pty (a package, so its conftest does not shadow tests/conftest.py)."""
