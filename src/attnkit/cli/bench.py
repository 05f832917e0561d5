"""``attnkit bench <suite>``: the benchmark suites of :mod:`attnkit.bench`.

Suites: ``overhead``, ``attention``, ``classic``, ``train``, ``ring``, ``hf``. Each writes JSON
and a markdown table into ``--out``; the report records the command line that reproduces it,
every option spelled out. Output paths and names are checked before anything is timed.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from attnkit._validate import arg_float, arg_int, output_dir, safe_name
from attnkit.errors import UserError

HELP = "benchmarks (results as JSON and markdown)"
DEFAULT_OUT = "benchmarks/results"


def _out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder (default %(default)s)")


def _add_overhead(suites) -> None:
    parser = suites.add_parser(
        "overhead", help="attnkit.attention(backend='auto') against calling SDPA directly")
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=[1024, 4096],
                        help="sequence lengths (default %(default)s)")
    parser.add_argument("--repeats", type=arg_int(1), default=7,
                        help="timed runs per case (default %(default)s)")
    _out(parser)


def _add_attention(suites) -> None:
    from attnkit.bench.attention import ALL_CASES, CANDIDATES, CASES, MODES

    parser = suites.add_parser(
        "attention", help="backends side by side: SDPA, reference, tiled, FlexAttention",
        description="Time attention backends on the same inputs (B=1, H=8, D=64, float32, "
                    "CPU); ratios against SDPA's flash kernel; JSON + markdown report.")
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=[1024, 4096],
                        help="sequence lengths (default %(default)s)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=ALL_CASES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=None,
                        help="default: all that can run here")
    parser.add_argument("--repeats", type=arg_int(1), default=5,
                        help="timed runs per case (default %(default)s)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory per case in a subprocess")
    parser.add_argument("--max-dense-gib", type=arg_float(0.0, low_open=True), default=6.0,
                        help="skip candidates that would materialize more than this many GiB "
                             "(default %(default)s)")
    parser.add_argument("--memory-curve", action="store_true",
                        help="only measure tiled causal fwd+bwd peak memory at --lengths "
                             "(report memory_curve; the other options do not apply)")
    parser.add_argument("--name", default="attention",
                        help="report file name, without extension (default %(default)s)")
    _out(parser)


def _add_classic(suites) -> None:
    parser = suites.add_parser(
        "classic", help="chunked additive attention memory; linear-attention decoding latency",
        description="Chunked vs textbook additive attention (time, peak memory) and per-token "
                    "decoding latency of recurrent linear attention vs softmax with a KV cache.")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    _out(parser)


def _add_train(suites) -> None:
    parser = suites.add_parser(
        "train", help="GPT training tokens/s vs a plain-torch GPT; KV-cache decoding latency",
        description="Training step time of attnkit's GPT against a minimal GPT in plain torch "
                    "(nanoGPT's CPU Shakespeare config), and per-token decoding latency at "
                    "positions 10 and 1000 with and without the KV cache.")
    parser.add_argument("--repeats", type=arg_int(1), default=7,
                        help="timed runs per candidate (default %(default)s; --quick uses 3)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    _out(parser)


def _add_ring(suites) -> None:
    parser = suites.add_parser(
        "ring", help="ring attention on gloo CPU processes: memory per rank, bytes, step time",
        description="Ring attention (attnkit.distributed) forward+backward with W gloo CPU "
                    "processes: peak memory per rank against one process's tiled attention, "
                    "bytes sent per step, step time, causal work balance; JSON + markdown, "
                    "with a written model of compute/communication overlap on GPU clusters.")
    parser.add_argument("--worlds", type=arg_int(1), nargs="+", default=[1, 2, 4],
                        help="world sizes (default %(default)s)")
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=[4096, 16384],
                        help="full sequence lengths, multiples of 2W (default %(default)s)")
    parser.add_argument("--layouts", nargs="+", choices=("zigzag", "contiguous"),
                        default=["zigzag", "contiguous"])
    parser.add_argument("--heads", type=arg_int(1), default=8, help="query heads (default 8)")
    parser.add_argument("--kv-heads", type=arg_int(1), default=8,
                        help="key/value heads (default 8)")
    parser.add_argument("--threads", type=arg_int(1), default=1,
                        help="torch threads per process (default %(default)s)")
    parser.add_argument("--repeats", type=arg_int(1), default=3,
                        help="timed steps per row (default %(default)s)")
    parser.add_argument("--max-gib", type=arg_float(0.0, low_open=True), default=24.0,
                        help="skip rows whose per-rank working set would exceed this "
                             "(default %(default)s)")
    parser.add_argument("--name", default="ring",
                        help="report file name, without extension (default %(default)s)")
    _out(parser)


def _add_hf(suites) -> None:
    parser = suites.add_parser(
        "hf", help="Hugging Face forward at long context: attnkit vs sdpa vs eager",
        description="Forward time of a random sliding-window Mistral (transformers) with "
                    "attn_implementation attnkit, sdpa and eager on the same weights, and "
                    "each output's largest difference from sdpa (needs attnkit[hf]).")
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=[4096, 16384],
                        help="context lengths (default %(default)s)")
    parser.add_argument("--window", type=arg_int(1), default=1024,
                        help="sliding window (default %(default)s)")
    parser.add_argument("--implementations", nargs="+", default=["attnkit", "sdpa", "eager"],
                        choices=("attnkit", "sdpa", "eager"),
                        help="sdpa always runs: it is the baseline (default %(default)s)")
    parser.add_argument("--layers", type=arg_int(1), default=2,
                        help="decoder layers (default %(default)s)")
    parser.add_argument("--repeats", type=arg_int(1), default=3,
                        help="timed forwards per row (default %(default)s)")
    parser.add_argument("--max-dense-gib", type=arg_float(0.0, low_open=True), default=6.0,
                        help="skip implementations whose dense per-layer tensors would exceed "
                             "this (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test sizes (L 256 and 512, window 64, one repeat)")
    parser.add_argument("--name", default="hf",
                        help="report file name, without extension (default %(default)s)")
    _out(parser)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench", help=HELP,
        description="Benchmark suites: candidates measured side by side in one process; "
                    "each suite writes JSON and a markdown table into --out.")
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for add in (_add_overhead, _add_attention, _add_classic, _add_train, _add_ring, _add_hf):
        add(suites)
    return parser


def command_line(args: argparse.Namespace) -> str:
    """The ``attnkit bench`` command that reproduces ``args``, every option spelled out."""
    words = ["attnkit", "bench", args.suite]
    for dest, value in vars(args).items():
        if dest in ("command", "suite") or value is None or value is False:
            continue
        flag = "--" + dest.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _run_overhead(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import overhead

    reason = overhead.lengths_refusal(args.lengths)
    if reason is not None:
        raise UserError(f"--lengths: {reason}")
    overhead.run(lengths=args.lengths, repeats=args.repeats, out_dir=args.out, command=command)


def _run_attention(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import attention

    if args.memory_curve:
        attention.memory_curve(lengths=args.lengths, out_dir=args.out, command=command)
        return
    name = safe_name(args.name, "--name")
    if args.candidates and "triton" in args.candidates:
        # The suite times CPU tensors; Triton's CPU interpreter is a test tool, not a peer.
        raise UserError("--candidates: triton runs on a CUDA device only, and this suite "
                        "times CPU tensors")
    attention.run(lengths=args.lengths, cases=args.cases, modes=args.modes,
                  candidates=args.candidates, repeats=args.repeats, memory=args.memory,
                  max_dense_gib=args.max_dense_gib, out_dir=args.out, name=name,
                  command=command)


def _run_classic(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import classic_additive, classic_linear

    classic_additive.run(quick=args.quick, out_dir=args.out, command=command)
    classic_linear.run(quick=args.quick, out_dir=args.out, command=command)


def _run_train(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import train

    train.run(repeats=args.repeats, quick=args.quick, out_dir=args.out, command=command)


def _run_ring(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import ring

    name = safe_name(args.name, "--name")
    if args.heads % args.kv_heads:
        raise UserError(f"--kv-heads: {args.kv_heads} does not divide --heads {args.heads}")
    bad = [(L, W) for L in args.lengths for W in args.worlds if L % (2 * W)]
    if bad:
        raise UserError(f"--lengths: L={bad[0][0]} does not split into 2W = {2 * bad[0][1]} "
                        f"equal zigzag chunks")
    ring.run(worlds=args.worlds, lengths=args.lengths, layouts=args.layouts, heads=args.heads,
             kv_heads=args.kv_heads, threads=args.threads, repeats=args.repeats,
             max_gib=args.max_gib, out_dir=args.out, name=name, command=command)


def _run_hf(args: argparse.Namespace, command: str) -> None:
    import importlib.util

    name = safe_name(args.name, "--name")
    if importlib.util.find_spec("transformers") is None:
        raise UserError("bench hf needs Hugging Face transformers: pip install 'attnkit[hf]'")
    from attnkit.bench import hf

    hf.run(lengths=args.lengths, window=args.window, implementations=args.implementations,
           repeats=args.repeats, max_dense_gib=args.max_dense_gib, layers=args.layers,
           quick=args.quick, out_dir=args.out, name=name, command=command)


SUITES: dict[str, Callable[[argparse.Namespace, str], None]] = {
    "overhead": _run_overhead, "attention": _run_attention, "classic": _run_classic,
    "train": _run_train, "ring": _run_ring, "hf": _run_hf,
}


def run(args: argparse.Namespace) -> int:
    output_dir(args.out, "--out")
    SUITES[args.suite](args, command_line(args))
    return 0
