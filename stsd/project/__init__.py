"""Project files (`.stsd.toml`): discovery, strict parsing and the trust store. Standard library only,
shared by the daemon and the thin client."""
