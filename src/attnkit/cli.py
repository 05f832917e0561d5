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
    rows = run_check(default_cases(quick=args.quick), dtypes=[dtypes[d] for d in args.dtype],
                     backends=args.backends)
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


def _cmd_bench_attention(args: argparse.Namespace) -> int:
    from attnkit.bench import attention as suite

    command = "attnkit bench attention " + " ".join(args.argv_echo)
    if args.memory_curve:
        suite.memory_curve(lengths=args.lengths, out_dir=args.out, command=command)
        return 0
    suite.run(lengths=args.lengths, cases=args.cases, modes=args.modes,
              candidates=args.candidates, repeats=args.repeats, memory=args.memory,
              max_dense_gib=args.max_dense_gib, out_dir=args.out, name=args.name,
              command=command)
    return 0


def _cmd_bench_classic(args: argparse.Namespace) -> int:
    from attnkit.bench import classic_additive, classic_linear

    classic_additive.run(quick=args.quick, out_dir=args.out)
    classic_linear.run(quick=args.quick, out_dir=args.out)
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from attnkit.bench.train import run

    run(repeats=args.repeats, quick=args.quick, out_dir=args.out)
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
    check.add_argument("--backends", nargs="+", choices=["sdpa", "tiled", "triton"],
                       default=None, help="backends to check (default: every one that "
                                          "runs here)")
    check.set_defaults(func=_cmd_check)

    bench = sub.add_parser("bench", help="benchmarks (results as JSON and markdown)")
    suites = bench.add_subparsers(dest="suite", required=True, parser_class=_Parser)
    overhead = suites.add_parser(
        "overhead", help="attnkit.attention(backend='auto') against calling SDPA directly")
    overhead.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    overhead.add_argument("--repeats", type=int, default=7)
    overhead.add_argument("--out", default="benchmarks/results", help="output folder")
    overhead.set_defaults(func=_cmd_bench_overhead)

    from attnkit.bench.attention import CANDIDATES, CASES

    att = suites.add_parser(
        "attention", help="backends side by side: SDPA, reference, tiled, FlexAttention",
        description="Time attention backends on the same inputs (B=1, H=8, D=64, float32); "
                    "ratios against SDPA's flash kernel; JSON + markdown report.")
    att.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    att.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    att.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"],
                     choices=["fwd", "fwd+bwd"])
    att.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=None,
                     help="default: all that can run here")
    att.add_argument("--repeats", type=int, default=5)
    att.add_argument("--memory", action="store_true",
                     help="also measure peak memory per case in a subprocess")
    att.add_argument("--max-dense-gib", type=float, default=6.0,
                     help="skip candidates that would materialize more than this")
    att.add_argument("--memory-curve", action="store_true",
                     help="only measure tiled fwd+bwd peak memory at --lengths")
    att.add_argument("--name", default="attention", help="report file name")
    att.add_argument("--out", default="benchmarks/results", help="output folder")
    att.set_defaults(func=_cmd_bench_attention)

    classic = suites.add_parser(
        "classic", help="chunked additive attention memory; linear-attention decoding latency",
        description="Chunked vs textbook additive attention (time, peak memory) and per-token "
                    "decoding latency of recurrent linear attention vs softmax with a KV cache.")
    classic.add_argument("--quick", action="store_true", help="smoke-test sizes")
    classic.add_argument("--out", default="benchmarks/results", help="output folder")
    classic.set_defaults(func=_cmd_bench_classic)

    train = suites.add_parser(
        "train", help="GPT training tokens/s vs a plain-torch GPT; KV-cache decoding latency",
        description="Training step time of attnkit's GPT against a minimal GPT in plain torch "
                    "(nanoGPT's CPU Shakespeare config), and per-token decoding latency at "
                    "positions 10 and 1000 with and without the KV cache.")
    train.add_argument("--repeats", type=int, default=7)
    train.add_argument("--quick", action="store_true", help="smoke-test sizes")
    train.add_argument("--out", default="benchmarks/results", help="output folder")
    train.set_defaults(func=_cmd_bench_train)

    from attnkit.data.cli import add_data_parser
    from attnkit.experiments.translate_cli import add_translate_parser

    add_translate_parser(sub, _Parser)
    add_data_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv_echo = argv[2:]  # the arguments after "bench <suite>", for report headers
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
