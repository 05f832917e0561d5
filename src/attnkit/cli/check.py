"""``attnkit check``: every backend that runs here against the float64 oracle.

The grid and the tolerance rule are :mod:`attnkit.check`'s; this module maps flags onto
them. A backend named with ``--backends`` that cannot run on this machine (Triton not
installed, no CUDA device) is a usage error, found before any case runs; without
``--backends`` such backends are left out and the summary says why.
"""

from __future__ import annotations

import argparse
import time

from attnkit._validate import output_file, unique
from attnkit.errors import UserError

HELP = "run every backend against the float64 oracle"
DTYPES = ("float32", "bfloat16", "float16")


def _backend_names() -> list[str]:
    """Every registered backend but the reference, which is the oracle itself."""
    from attnkit.kernels import BACKENDS

    return [name for name in BACKENDS if name != "reference"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check", help=HELP,
        description="Run every available backend against the float64 oracle on a grid of "
                    "shapes and masks; exit 1 on failure.")
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=DTYPES,
                        help="dtypes to check (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--backends", nargs="+", choices=_backend_names(), default=None,
                        help="backends to check (default: every one that runs here)")
    return parser


def _refusal_here(backend: str, dtype) -> str | None:
    """Why ``backend`` cannot run a plain CPU call of ``dtype`` here (the device and the
    dtypes the check uses), or None: the dispatcher's message, which names the backend."""
    import torch

    from attnkit.functional.attention import explain

    probe = torch.zeros(1, 1, 1, 8, dtype=dtype)
    try:
        explain(probe, probe, probe, backend=backend)
    except ValueError as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace) -> int:
    import torch

    from attnkit.check import default_cases, format_table, run_check

    json_path = None if args.json is None else output_file(args.json, "--json")
    dtypes = [getattr(torch, name) for name in unique(args.dtype, "--dtype")]
    skipped = {}
    if args.backends is None:
        backends = []
        for name in _backend_names():
            reason = _refusal_here(name, torch.float32)
            if reason is None:
                backends.append(name)
            else:
                skipped[name] = reason
    else:
        backends = unique(args.backends, "--backends")
        for name in backends:
            for dtype in dtypes:
                reason = _refusal_here(name, dtype)
                if reason is not None:
                    raise UserError(f"--backends: {reason}")
    start = time.perf_counter()
    try:
        rows = run_check(default_cases(quick=args.quick), dtypes=dtypes, backends=backends)
    except ValueError as exc:
        if "backends" not in str(exc):
            raise
        raise UserError(f"--backends: {exc}") from None
    print(format_table(rows))
    failed = sum(not row["ok"] for row in rows)
    print(f"\n{len(rows)} checks, {failed} failed, {time.perf_counter() - start:.1f} s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for name, reason in skipped.items():
        print(f"not checked: {name}: {reason}")
    if json_path is not None:
        from attnkit._io import atomic_write_json

        atomic_write_json(json_path, rows)
    return 1 if failed else 0
