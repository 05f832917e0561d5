"""Argument checks shared by every layer: one copy of the int/float/choice rules.

Two families, one rule each:

* ``check_*`` validate a Python API argument and raise ``TypeError`` (wrong type) or
  ``ValueError`` (wrong value), both naming the argument and the value received.
* ``arg_*`` build ``type=`` callables for argparse: a bad command-line value becomes
  ``argparse.ArgumentTypeError``, which the parser turns into one line and exit code 2.
  ``output_dir``/``output_file``/``safe_name`` check paths before any long work starts and
  raise :class:`attnkit.errors.UserError`.

Booleans are never accepted as numbers, and NaN/inf are refused unless asked for.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from attnkit.errors import UserError

__all__ = [
    "check_int", "check_float", "check_choice", "check_bool",
    "arg_int", "arg_float", "output_dir", "output_file", "safe_name", "existing_dir",
    "existing_path", "unique", "available_memory_bytes", "check_fits_in_memory",
]


def _who(name: str, owner: str | None) -> str:
    return f"{owner}: {name}" if owner else name


def check_int(value: object, name: str, *, minimum: int | None = None,
              maximum: int | None = None, owner: str | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; ``TypeError``/``ValueError`` naming
    ``name`` (prefixed by ``owner``, e.g. a class name) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_who(name, owner)} must be an int, got {type(value).__name__} "
                        f"({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_who(name, owner)} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{_who(name, owner)} must be <= {maximum}, got {value}")
    return int(value)


def check_float(value: object, name: str, *, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False,
                allow_inf: bool = False, owner: str | None = None) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (open ends with
    ``low_open``/``high_open``). NaN is always refused; infinity only with ``allow_inf``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{_who(name, owner)} must be a number, got {type(value).__name__} "
                        f"({value!r})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{_who(name, owner)} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{_who(name, owner)} must be in {left}{lo}, {hi}{right}, got {value:g}")
    return value


def check_choice(value: object, name: str, choices: Iterable[Any], *,
                 owner: str | None = None) -> Any:
    """``value`` if it is one of ``choices``; ``ValueError`` listing them otherwise."""
    options = list(choices)
    if isinstance(value, bool) or value not in options:
        raise ValueError(f"{_who(name, owner)} must be one of {options}, got {value!r}")
    return value


def check_bool(value: object, name: str, *, owner: str | None = None) -> bool:
    """``value`` if it is a bool (not merely truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{_who(name, owner)} must be a bool, got {type(value).__name__} "
                        f"({value!r})")
    return value


def arg_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for integers in ``[minimum, maximum]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected an integer <= {maximum}, got {text!r}")
        return value
    parse.__name__ = "integer"
    parse.minimum, parse.maximum = minimum, maximum  # for tests that derive bad values
    return parse


def arg_float(low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for finite numbers in the given interval (NaN and inf refused)."""
    def parse(text: str) -> float:
        try:
            value = check_float(float(text), "value", low=low, high=high, low_open=low_open,
                                high_open=high_open)
        except ValueError as exc:
            reason = str(exc).removeprefix("value ")
            raise argparse.ArgumentTypeError(f"{text!r}: {reason}") from None
        return value
    parse.__name__ = "number"
    parse.low, parse.high = low, high  # for tests that derive bad values
    parse.low_open, parse.high_open = low_open, high_open
    return parse


def _probe_writable(folder: Path, flag: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".attnkit-probe-")
    except OSError as exc:
        raise UserError(f"{flag}: cannot write in {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def output_dir(path: str | os.PathLike, flag: str = "--out", *, create: bool = False) -> Path:
    """Check that ``path`` is (or can become) a folder this process can write in.

    Nothing is created unless ``create``; the check happens before a long run starts, so
    that a typo costs seconds, not the run. Raises :class:`UserError` naming ``flag``.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag}: {path} exists and is not a folder")
    anchor = _nearest_existing(path)
    if not anchor.is_dir():
        raise UserError(f"{flag}: {anchor} is not a folder, so {path} cannot be created")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{flag}: cannot create {path}: {exc.strerror or exc}") from None
        anchor = path
    _probe_writable(anchor, flag)
    return path


def output_file(path: str | os.PathLike, flag: str) -> Path:
    """Check that a file can be written at ``path`` (its folder exists or can be made, and is
    writable; the path itself is not a folder). Raises :class:`UserError` naming ``flag``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder, expected a file path")
    if path.exists() and not path.is_file():
        # A device or a pipe: the atomic rename would replace the node itself.
        raise UserError(f"{flag}: {path} exists and is not a regular file")
    output_dir(path.parent if str(path.parent) else Path("."), flag)
    return path


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(text: str, flag: str = "--name") -> str:
    """A file-name stem that stays inside its folder: letters, digits, ``.``, ``_``, ``-``;
    no separators, no leading dot, no ``..``. Raises :class:`UserError` naming ``flag``."""
    if not isinstance(text, str) or not _SAFE_NAME.match(text) or ".." in text:
        raise UserError(f"{flag}: expected a plain name (letters, digits, '.', '_', '-'; no "
                        f"path separators or '..'), got {text!r}")
    return text


def existing_dir(path: str | os.PathLike, flag: str) -> Path:
    """``path`` if it is an existing folder; :class:`UserError` naming ``flag`` otherwise."""
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise UserError(f"{flag}: {path} {what}")
    return path


def existing_path(path: str | os.PathLike, flag: str) -> Path:
    """``path`` if it exists; :class:`UserError` naming ``flag`` otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{flag}: {path} does not exist")
    return path


def unique(values: Iterable[Any], flag: str) -> list:
    """``values`` as a list when no entry repeats (a repeated model, length or seed would run
    twice or be dropped without a word); :class:`UserError` naming ``flag`` otherwise."""
    values = list(values)
    repeated = list(dict.fromkeys(v for i, v in enumerate(values) if v in values[:i]))
    if repeated:
        raise UserError(f"{flag}: each value may appear once, got "
                        f"{', '.join(map(str, repeated))} more than once")
    return values


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else the total physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(need_bytes: float, flag: str, what: str) -> None:
    """:class:`UserError` naming ``flag`` when ``need_bytes`` (a lower bound of what the run
    will hold, so that only hopeless settings are refused) exceeds the memory available now.
    Each option may be within its own bounds while their product is not (a batch of 65,536
    images times 4,096 channels); this catches that before the run allocates it."""
    have = available_memory_bytes()
    if need_bytes > have:
        raise UserError(f"{flag}: {what} needs at least {need_bytes / 2**30:,.1f} GiB, "
                        f"{have / 2**30:,.1f} GiB available")
