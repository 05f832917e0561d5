"""The ``attnkit`` command line: one parser class, a registry of commands, one error path.

:data:`COMMANDS` maps a command name to the module that implements it. A command module
exposes::

    HELP: str                                  # the one line `attnkit --help` shows
    def add_parser(subparsers) -> argparse.ArgumentParser
        # register the command on `subparsers` (whose parser_class is Parser, so nested
        # add_subparsers inherit it); never use dest="command", which names the command
    def run(args: argparse.Namespace) -> int   # the exit code

and imports nothing heavy (no torch) at module level, so ``attnkit --help`` stays fast.
Only the command being run is imported and has its ``add_parser`` called.

Exit codes: a usage error (argparse) or an :class:`~attnkit.errors.UserError` raised by
``run`` is one line on stderr and code 2; Ctrl-C is one line and code 130; any other
exception is a bug and keeps its traceback (code 1).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from attnkit.cli.parser import Parser
from attnkit.errors import UserError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: dict[str, str] = {
    "check": "attnkit.cli.check",
    "bench": "attnkit.cli.bench",
    "translate": "attnkit.experiments.translate.cli",
    "longrange": "attnkit.experiments.longrange.cli",
    "induction": "attnkit.experiments.induction.cli",
    "vision": "attnkit.experiments.vision.cli",
    "memory": "attnkit.experiments.memory.cli",
    "snail": "attnkit.experiments.snail.cli",
    "pairs": "attnkit.experiments.pairs.cli",
    "data": "attnkit.data.cli",
    "inspect": "attnkit.cli.inspect",
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(COMMANDS[command])


def build_parser(command: str | None = None) -> Parser:
    """The top-level parser.

    With ``command``, only that command is registered, with its full parser: running one
    command imports no other command module. Without it, every command is listed with its
    ``HELP`` (enough for ``attnkit --help`` and for refusing an unknown command).
    """
    parser = Parser(prog="attnkit", description="Attention mechanisms under one API.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    if command is not None:
        _module(command).add_parser(sub)
        return parser
    for name in COMMANDS:
        sub.add_parser(name, help=_module(name).HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Usage errors and ``--help`` leave through argparse's ``SystemExit`` (code 2 and 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    try:
        return _module(args.command).run(args)
    except UserError as exc:
        print(f"attnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return 130
