"""The one exception type that the command line turns into a single error line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, an argument or a value that cannot be used.

    The message must name the offending file, line, argument or value. The CLI prints it as
    ``lstmkit: error: <message>`` and exits with status 2, without a traceback unless ``--debug``.
    """
