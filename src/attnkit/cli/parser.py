"""The one argument-parser class of the command line.

Every parser of ``attnkit`` is a :class:`Parser`: the top-level one creates its subparsers
with ``parser_class=Parser``, and nested ``add_subparsers`` calls inherit the class, so a
command module never names it.

One rule holds for every option and positional of every command: an empty (or blank) value
is a usage error. No attnkit argument means anything when empty, and an empty path would
silently mean "the current folder" (``--out ""`` writing a report into the working tree).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the pointer to ``--help``), exit 2,
    reported by the (sub)command parser that met it."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse hook
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _get_value(self, action, arg_string):  # argparse hook: every value passes here
        # a subcommand's arguments pass here unparsed too (nargs PARSER): its parser checks them
        if isinstance(arg_string, str) and not arg_string.strip() \
                and action.nargs not in (argparse.PARSER, argparse.REMAINDER):
            raise argparse.ArgumentError(action, f"expected a non-empty value, got {arg_string!r}")
        return super()._get_value(action, arg_string)

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse API
        # A subcommand's parser meets the unknown arguments first: reporting them here names
        # the command and its --help, instead of handing them up to the top-level parser.
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras
