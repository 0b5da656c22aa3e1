"""Attacks on the client side of the security model (README: Security model), each run with real processes: another local user
(setpriv), real bash/zsh/fish on a pty, impostor socket servers, hostile repositories, the real daemon.
A package, so its conftest does not shadow tests/conftest.py."""
