"""The ``attnkit`` command line: ``attnkit check``, ``attnkit bench ...``.

Bad arguments exit with code 2 and one line on stderr; ``--help`` works everywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the pointer to --help)."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_check(args: argparse.Namespace) -> int:
    import torch

    from attnkit.check import default_cases, format_table, run_check

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    start = time.perf_counter()
    rows = run_check(default_cases(quick=args.quick), dtypes=[dtypes[d] for d in args.dtype])
    print(format_table(rows))
    failed = sum(not r["ok"] for r in rows)
    print(f"\n{len(rows)} checks, {failed} failed, {time.perf_counter() - start:.1f} s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    if args.json:
        from attnkit._io import atomic_write_json

        atomic_write_json(args.json, rows)
    return 1 if failed else 0


def _cmd_bench_overhead(args: argparse.Namespace) -> int:
    from attnkit.bench.overhead import run

    run(lengths=args.lengths, repeats=args.repeats, out_dir=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnkit", description="Attention mechanisms under one API.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="run every backend against the float64 oracle",
                           description="Run every available backend against the float64 "
                                       "oracle on a grid of shapes and masks; exit 1 on failure.")
    check.add_argument("--quick", action="store_true", help="a smaller grid")
    check.add_argument("--dtype", nargs="+", default=["float32", "bfloat16", "float16"],
                       choices=["float32", "bfloat16", "float16"], help="dtypes to check")
    check.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    check.set_defaults(func=_cmd_check)

    bench = sub.add_parser("bench", help="benchmarks (results as JSON and markdown)")
    suites = bench.add_subparsers(dest="suite", required=True, parser_class=_Parser)
    overhead = suites.add_parser(
        "overhead", help="attnkit.attention(backend='auto') against calling SDPA directly")
    overhead.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    overhead.add_argument("--repeats", type=int, default=7)
    overhead.add_argument("--out", default="benchmarks/results", help="output folder")
    overhead.set_defaults(func=_cmd_bench_overhead)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
