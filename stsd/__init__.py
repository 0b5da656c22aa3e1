"""stsd: short-lived AWS role credentials per project, served by a per-user daemon."""

__version__ = "0.1.0"
