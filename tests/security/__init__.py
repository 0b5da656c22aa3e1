"""Attacks on the client side of principle 8 (DESIGN.md), each run with real processes: another local user
(setpriv), real bash/zsh/fish on a pty, impostor socket servers, hostile repositories, the real daemon.
A package, so its conftest does not shadow tests/conftest.py."""
