"""``attnkit bench <suite>``: the benchmark suites of :mod:`attnkit.bench`.

Suites: ``overhead``, ``attention``, ``classic``, ``train``, ``ring``, ``hf``. Each writes JSON
and a markdown table into ``--out``; the report records the command line that reproduces it,
every option spelled out. Output paths, names, repeated list entries, inputs that cannot fit
in memory and options that would be ignored (a size given with ``--quick``, a timing option
with ``--memory-curve``) are refused before anything is timed.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from attnkit._validate import arg_float, arg_int, output_dir, safe_name, unique
from attnkit.errors import UserError

HELP = "benchmarks (results as JSON and markdown)"
DEFAULT_OUT = "benchmarks/results"
MAX_WORLD = 256  # gloo processes on one machine; more is a typo
MAX_HEADS = 4096
MAX_LAYERS = 1024
MAX_WINDOW = 1 << 24
#: list options of each suite: a repeated entry would measure the same row twice
_LISTS = ("lengths", "cases", "modes", "candidates", "worlds", "layouts", "implementations")


#: attention suite defaults (None in the parser, so that --memory-curve can tell what was given)
_ATTENTION_DEFAULTS = {"repeats": 5, "max_dense_gib": 6.0, "name": "attention"}
_HF_DEFAULTS = {"lengths": [4096, 16384], "window": 1024, "repeats": 3}


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
    parser.add_argument("--cases", nargs="+", default=None, choices=ALL_CASES,
                        help=f"default: {' '.join(CASES)}")
    parser.add_argument("--modes", nargs="+", default=None, choices=MODES,
                        help=f"default: {' '.join(MODES)}")
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=None,
                        help="default: all that can run here")
    parser.add_argument("--repeats", type=arg_int(1), default=None,
                        help=f"timed runs per case (default {_ATTENTION_DEFAULTS['repeats']})")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory per case in a subprocess")
    parser.add_argument("--max-dense-gib", type=arg_float(0.0, low_open=True), default=None,
                        help="skip candidates that would materialize more than this many GiB "
                             f"(default {_ATTENTION_DEFAULTS['max_dense_gib']})")
    parser.add_argument("--memory-curve", action="store_true",
                        help="only measure tiled causal fwd+bwd peak memory at --lengths "
                             "(report memory_curve; only --lengths and --out apply)")
    parser.add_argument("--name", default=None,
                        help="report file name, without extension (default "
                             f"{_ATTENTION_DEFAULTS['name']})")
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
    parser.add_argument("--repeats", type=arg_int(1), default=None,
                        help="timed runs per candidate (default 7; --quick uses 3 and takes "
                             "no --repeats)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    _out(parser)


def _add_ring(suites) -> None:
    parser = suites.add_parser(
        "ring", help="ring attention on gloo CPU processes: memory per rank, bytes, step time",
        description="Ring attention (attnkit.distributed) forward+backward with W gloo CPU "
                    "processes: peak memory per rank against one process's tiled attention, "
                    "bytes sent per step, step time, causal work balance; JSON + markdown, "
                    "with a written model of compute/communication overlap on GPU clusters.")
    parser.add_argument("--worlds", type=arg_int(1, MAX_WORLD), nargs="+", default=[1, 2, 4],
                        help="world sizes (default %(default)s)")
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=[4096, 16384],
                        help="full sequence lengths, multiples of 2W (default %(default)s)")
    parser.add_argument("--layouts", nargs="+", choices=("zigzag", "contiguous"),
                        default=["zigzag", "contiguous"])
    parser.add_argument("--heads", type=arg_int(1, MAX_HEADS), default=8,
                        help="query heads (default 8)")
    parser.add_argument("--kv-heads", type=arg_int(1, MAX_HEADS), default=8,
                        help="key/value heads (default 8)")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=1,
                        help="torch threads per process (default %(default)s)")
    parser.add_argument("--window", type=arg_int(1, MAX_WINDOW), default=None,
                        help="a causal sliding window of this many keys: work grows as "
                             "L x window, memory still as L, so lengths that fill the "
                             "machine's memory can be measured (default: full causal)")
    parser.add_argument("--repeats", type=arg_int(1), default=None,
                        help="timed steps per row (default 3)")
    parser.add_argument("--no-timing", action="store_true",
                        help="measure memory, bytes and work only, no timed steps: the "
                             "figures that do not depend on the machine's load")
    parser.add_argument("--memory", choices=("profiler", "rss"), default="profiler",
                        help="profiler: the exact tensor peak from the allocator's events "
                             "(default); rss: the resident set's growth during one step, "
                             "for shards too long for the profiler's event log")
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
    parser.add_argument("--lengths", type=arg_int(1), nargs="+", default=None,
                        help="context lengths (default 4096 16384)")
    parser.add_argument("--window", type=arg_int(1, MAX_WINDOW), default=None,
                        help="sliding window (default 1024)")
    parser.add_argument("--implementations", nargs="+", default=["attnkit", "sdpa", "eager"],
                        choices=("attnkit", "sdpa", "eager"),
                        help="sdpa always runs: it is the baseline (default %(default)s)")
    parser.add_argument("--layers", type=arg_int(1, MAX_LAYERS), default=2,
                        help="decoder layers (default %(default)s)")
    parser.add_argument("--repeats", type=arg_int(1), default=None,
                        help="timed forwards per row (default 3)")
    parser.add_argument("--max-dense-gib", type=arg_float(0.0, low_open=True), default=6.0,
                        help="skip implementations whose dense per-layer tensors would exceed "
                             "this (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test sizes (L 256 and 512, window 64, one repeat; takes no "
                             "--lengths, --window or --repeats)")
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


def _memory_refusal(lengths: list[int], heads: int = 8) -> None:
    """UserError naming --lengths when the longest case's inputs cannot fit in memory."""
    from attnkit.bench.overhead import lengths_refusal

    reason = lengths_refusal(lengths, heads=heads)
    if reason is not None:
        raise UserError(f"--lengths: {reason}")


def _check_overhead(args: argparse.Namespace) -> None:
    _memory_refusal(args.lengths)


def _check_attention(args: argparse.Namespace) -> None:
    from attnkit.bench.attention import CASES, MODES

    if args.memory_curve:
        ignored = [f"--{name.replace('_', '-')}" for name in
                   ("cases", "modes", "candidates", "repeats", "max_dense_gib", "name")
                   if getattr(args, name) is not None] + (["--memory"] if args.memory else [])
        if ignored:
            raise UserError(f"{ignored[0]}: does not apply to --memory-curve (which measures "
                            f"tiled causal fwd+bwd at --lengths only)")
        _memory_refusal(args.lengths)
        return
    args.name = safe_name(args.name or _ATTENTION_DEFAULTS["name"], "--name")
    for name, default in (("cases", CASES), ("modes", MODES)):
        if getattr(args, name) is None:
            setattr(args, name, list(default))
    for name in ("repeats", "max_dense_gib"):
        if getattr(args, name) is None:
            setattr(args, name, _ATTENTION_DEFAULTS[name])
    if args.candidates and "triton" in args.candidates:
        # The suite times CPU tensors; Triton's CPU interpreter is a test tool, not a peer.
        raise UserError("--candidates: triton runs on a CUDA device only, and this suite "
                        "times CPU tensors")
    _memory_refusal(args.lengths)


def _check_train(args: argparse.Namespace) -> None:
    if args.quick and args.repeats is not None:
        raise UserError("--repeats: --quick times 3 runs per candidate; give one or the other")
    if args.repeats is None and not args.quick:
        args.repeats = 7


def _check_ring(args: argparse.Namespace) -> None:
    args.name = safe_name(args.name, "--name")
    if args.no_timing and args.repeats is not None:
        raise UserError("--repeats: --no-timing runs no timed steps; give one or the other")
    if not args.no_timing and args.repeats is None:
        args.repeats = 3
    if args.heads % args.kv_heads:
        raise UserError(f"--kv-heads: {args.kv_heads} does not divide --heads {args.heads}")
    bad = [(L, W) for L in args.lengths for W in args.worlds if L % (2 * W)]
    if bad:
        raise UserError(f"--lengths: L={bad[0][0]} does not split into 2W = {2 * bad[0][1]} "
                        f"equal zigzag chunks")
    if args.memory == "rss":
        from attnkit.bench.timing import _reset_peak_rss

        if not _reset_peak_rss():
            raise UserError("--memory: 'rss' needs the resident-set high-water mark that Linux "
                            "resets through /proc/self/clear_refs, unavailable here; use "
                            "--memory profiler")
    _memory_refusal(args.lengths, heads=args.heads)


def _check_hf(args: argparse.Namespace) -> None:
    import importlib.util

    args.name = safe_name(args.name, "--name")
    if args.quick:
        given = [f"--{name}" for name in _HF_DEFAULTS if getattr(args, name) is not None]
        if given:
            raise UserError(f"{given[0]}: --quick sets L 256 and 512, window 64 and one "
                            f"repeat; give sizes or --quick, not both")
    else:  # --quick's sizes stay unset, so that the recorded command replays as given
        for name, default in _HF_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
        _memory_refusal(args.lengths)
    if importlib.util.find_spec("transformers") is None:
        raise UserError("bench hf needs Hugging Face transformers: pip install 'attnkit[hf]'")


def _run_overhead(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import overhead

    overhead.run(lengths=args.lengths, repeats=args.repeats, out_dir=args.out, command=command)


def _run_attention(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import attention

    if args.memory_curve:
        attention.memory_curve(lengths=args.lengths, out_dir=args.out, command=command)
        return
    attention.run(lengths=args.lengths, cases=args.cases, modes=args.modes,
                  candidates=args.candidates, repeats=args.repeats, memory=args.memory,
                  max_dense_gib=args.max_dense_gib, out_dir=args.out, name=args.name,
                  command=command)


def _run_classic(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import classic_additive, classic_linear

    classic_additive.run(quick=args.quick, out_dir=args.out, command=command)
    classic_linear.run(quick=args.quick, out_dir=args.out, command=command)


def _run_train(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import train

    train.run(repeats=None if args.quick else args.repeats, quick=args.quick, out_dir=args.out,
              command=command)


def _run_ring(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import ring

    ring.run(worlds=args.worlds, lengths=args.lengths, layouts=args.layouts, heads=args.heads,
             kv_heads=args.kv_heads, window=args.window, threads=args.threads,
             repeats=args.repeats or 1, timed=not args.no_timing, memory=args.memory,
             max_gib=args.max_gib, out_dir=args.out, name=args.name, command=command)


def _run_hf(args: argparse.Namespace, command: str) -> None:
    from attnkit.bench import hf

    sizes = {name: None if args.quick else getattr(args, name)
             for name in _HF_DEFAULTS}  # with quick, hf.run uses its own
    hf.run(**sizes, implementations=args.implementations, max_dense_gib=args.max_dense_gib,
           layers=args.layers, quick=args.quick, out_dir=args.out, name=args.name,
           command=command)


CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "overhead": _check_overhead, "attention": _check_attention, "train": _check_train,
    "ring": _check_ring, "hf": _check_hf,
}
SUITES: dict[str, Callable[[argparse.Namespace, str], None]] = {
    "overhead": _run_overhead, "attention": _run_attention, "classic": _run_classic,
    "train": _run_train, "ring": _run_ring, "hf": _run_hf,
}


def run(args: argparse.Namespace) -> int:
    """Check every option (UserError naming it), then run the suite."""
    output_dir(args.out, "--out")
    for name in _LISTS:
        if getattr(args, name, None) is not None:
            setattr(args, name, unique(getattr(args, name), f"--{name}"))
    if args.suite in CHECKS:
        CHECKS[args.suite](args)
    SUITES[args.suite](args, command_line(args))
    return 0
