"""The thin client: talks to the daemon over its socket and renders results. Standard library only."""
