"""Errors shared by every layer.

:class:`UserError` is the one exception that means "the user asked for something that
cannot be done" at an entry point (a bad CLI argument, an unwritable output folder, a
checkpoint that does not match the flags). The command line prints its message as one
line and exits with code 2; anything else that escapes a command is a bug and keeps its
traceback. It lives here, in the lowest layer, so that data, experiments and the CLI can
all raise it without importing upward.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A problem the user can fix; its message is one line that says what and how."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
