"""The one exception type for user-facing problems: its message is a single line that names the
setting, row or value that is wrong and says what to do. The CLI and the Dagster layer print it
without a traceback."""


class QGError(Exception):
    """A problem the user can fix (bad setting, bad input); ``str(err)`` is one line."""
