"""The one error the demo reports to the user instead of a traceback."""


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""
