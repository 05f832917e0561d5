"""Crash-safe training checkpoints: safetensors for tensors, JSON for everything else.

One checkpoint is a directory::

    ckpt-00001000/
        model.safetensors      model.state_dict(); tensors that share storage (tied weights)
                               are stored once, the other names recorded as aliases
        optimizer.safetensors  optimizer state tensors, named "state.<param index>.<key>"
        state.json             format/version, step, config, model_config, scheduler state,
                               optimizer param groups + non-tensor state + tensor index,
                               model aliases, RNG states (one per process), metrics so far,
                               trainer extras

A run directory (the trainer's ``out_dir``) holds ``ckpt-<step:08d>`` directories and a
``latest`` text file naming the newest one. A checkpoint is written into a hidden temporary
directory next to its final place, every file is fsynced, and the directory is then renamed:
a crash leaves either the previous checkpoint or the new one, never half of one. ``latest``
is replaced atomically after the rename; when it is missing or stale-and-broken,
:func:`latest_checkpoint` falls back to the newest complete ``ckpt-*`` directory.

Loading never unpickles: tensors come from safetensors, everything else from JSON.
Missing or corrupt files raise :class:`CheckpointError` saying which file and why.

RNG states (torch CPU, every initialized CUDA device, Python's ``random``, NumPy's global
generator) are plain JSON: byte states as base64 strings, the Mersenne-Twister keys as lists.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit._io import atomic_write_text

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "save_run_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "checkpoint_path",
    "get_rng_state",
    "set_rng_state",
]

FORMAT = "attnkit-checkpoint"
VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
_CKPT_RE = re.compile(r"^ckpt-(\d{8,})$")
_TEMP_PREFIXES = (".tmp-ckpt-", ".old-ckpt-")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not fit the model/optimizer."""


@dataclass
class Checkpoint:
    path: Path                                     # the checkpoint directory that was read
    step: int                                      # optimizer updates done when it was saved
    state: dict[str, Any]                          # the whole of state.json
    model_state: dict[str, torch.Tensor]           # state_dict, tied names share one tensor
    optimizer_state: dict[str, Any] | None = None  # torch optimizer state_dict form, or None
    rng: list[dict[str, Any]] = field(default_factory=list)  # RNG state per rank


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("checkpoints need safetensors: pip install 'attnkit[train]'") from error
    return safetensors.torch


# ----------------------------------------------------------------------------- JSON helpers

def _jsonable(value: Any, where: str) -> Any:
    """``value`` with tuples turned into lists; CheckpointError for anything JSON cannot hold."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise CheckpointError(f"cannot save {where}: key {key!r} is not a str or int")
            out[str(key)] = _jsonable(item, f"{where}.{key}")
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    raise CheckpointError(f"cannot save {where}: {type(value).__name__} is not JSON-serializable")


# ----------------------------------------------------------------------------- RNG states

def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def get_rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-able data (see :func:`set_rng_state`)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "python": [version, list(internal), gauss],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": [int(k) for k in numpy_state["state"]["key"]],
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`get_rng_state`; CheckpointError if malformed."""
    try:
        torch.set_rng_state(_unb64(state["torch"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy_state = state["numpy"]
        np.random.set_state({
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": np.asarray(numpy_state["key"], dtype=np.uint32),
                      "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        })
        if "cuda" in state and torch.cuda.is_available():
            cuda_states = [_unb64(s) for s in state["cuda"]]
            if len(cuda_states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda_states)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"malformed RNG state in checkpoint: {error!r}") from error


# ----------------------------------------------------------------------------- tensors

def _storage_key(tensor: torch.Tensor) -> tuple:
    return (tensor.device, tensor.untyped_storage().data_ptr())


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors of which no two share storage (safetensors refuses sharing)."""
    by_storage: dict[tuple, int] = {}
    for tensor in tensors.values():
        if tensor.numel():
            by_storage[_storage_key(tensor)] = by_storage.get(_storage_key(tensor), 0) + 1
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        shared = tensor.numel() and by_storage[_storage_key(tensor)] > 1
        tensor = tensor.to("cpu").contiguous()
        out[name] = tensor.clone() if shared else tensor
    return out


def _model_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, aliases)``: the state_dict with each tied tensor once, alias -> stored name.

    Entries that are the same view of the same storage (tied weights) are aliases; partly
    overlapping views are stored as independent copies.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"cannot save model: state_dict entry {name!r} is a "
                                  f"{type(tensor).__name__}, not a tensor")
        key = (_storage_key(tensor), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()), tensor.dtype)
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor
    return _unshare(tensors), aliases


def _flatten_optimizer(optimizer: torch.optim.Optimizer
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict as ``(tensors, meta)``: tensors by flat name, the rest JSON."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    index: dict[str, list] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                name = f"state.{param_index}.{key}"
                tensors[name] = value
                index[name] = [param_index, key]
            else:
                scalars.setdefault(str(param_index), {})[key] = _jsonable(
                    value, f"optimizer state {param_index}.{key}")
    meta = {"param_groups": _jsonable(state_dict["param_groups"], "optimizer param_groups"),
            "scalars": scalars, "tensors": index}
    return _unshare(tensors), meta


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems (and Windows) cannot fsync a directory
        pass


def _write_dir_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_dir)``, then rename ``tmp_dir`` to ``path`` (replacing it if present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; run directories are meant to be shared
        write(tmp)
        for item in tmp.iterdir():
            os.chmod(item, 0o644)  # safetensors may create files 0600
            _fsync_file(item)
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- saving

def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    config: Any = None, model_config: Any = None, scheduler: Any = None,
                    metrics: list[dict[str, Any]] | None = None,
                    rng: list[dict[str, Any]] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write one checkpoint directory at ``path`` atomically (replacing an existing one).

    Args:
        path: the checkpoint directory to create.
        model: its ``state_dict()`` goes to model.safetensors (unwrap DDP first).
        optimizer: its state goes to optimizer.safetensors + state.json (None: not saved).
        step: optimizer updates done.
        config, model_config: dataclasses or dicts, stored as JSON.
        scheduler: an object with ``state_dict()`` or a dict.
        metrics: the metric records so far (list of JSON-able dicts).
        rng: RNG states, one per rank (default: this process's :func:`get_rng_state`).
        extra: any other JSON-able trainer state.

    Returns:
        ``Path(path)``.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"save_checkpoint: step must be an int >= 0, got {step!r}")
    st = _safetensors()
    path = Path(path)
    model_tensors, aliases = _model_tensors(model)
    optimizer_tensors, optimizer_meta = (_flatten_optimizer(optimizer) if optimizer is not None
                                         else ({}, None))
    if scheduler is not None and hasattr(scheduler, "state_dict"):
        scheduler = scheduler.state_dict()
    state = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "config": _jsonable(config, "config"),
        "model_config": _jsonable(model_config, "model_config"),
        "scheduler": _jsonable(scheduler, "scheduler state"),
        "optimizer": optimizer_meta,
        "model_aliases": aliases,
        "rng": _jsonable(rng if rng is not None else [get_rng_state()], "rng"),
        "metrics": _jsonable(metrics or [], "metrics"),
        "extra": _jsonable(extra or {}, "extra"),
    }
    text = json.dumps(state, indent=1) + "\n"

    def write(directory: Path) -> None:
        st.save_file(model_tensors, directory / MODEL_FILE, metadata={"format": FORMAT})
        if optimizer_meta is not None:
            st.save_file(optimizer_tensors, directory / OPTIMIZER_FILE,
                         metadata={"format": FORMAT})
        (directory / STATE_FILE).write_text(text, encoding="utf-8")

    _write_dir_atomically(path, write)
    return path


def checkpoint_path(out_dir: str | os.PathLike, step: int) -> Path:
    """``out_dir/ckpt-<step:08d>``."""
    return Path(out_dir) / f"ckpt-{step:08d}"


def _run_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``ckpt-*`` directories in ``out_dir``, oldest first."""
    if not out_dir.is_dir():
        return []
    found = []
    for item in out_dir.iterdir():
        match = _CKPT_RE.match(item.name)
        if match and item.is_dir():
            found.append((int(match.group(1)), item))
    return sorted(found)


def save_run_checkpoint(out_dir: str | os.PathLike, *, step: int, keep_last: int = 2,
                        **kwargs: Any) -> Path:
    """Save ``out_dir/ckpt-<step>``, point ``out_dir/latest`` at it, keep the newest ``keep_last``.

    ``kwargs`` are those of :func:`save_checkpoint` (``model`` is required). Leftover
    temporary directories of interrupted saves are removed first.
    """
    if not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"save_run_checkpoint: keep_last must be an int >= 1, got {keep_last!r}")
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        for item in out_dir.iterdir():
            if item.is_dir() and item.name.startswith(_TEMP_PREFIXES):
                shutil.rmtree(item, ignore_errors=True)
    path = save_checkpoint(checkpoint_path(out_dir, step), step=step, **kwargs)
    atomic_write_text(out_dir / LATEST_FILE, path.name + "\n")
    for _, old in _run_checkpoints(out_dir)[:-keep_last]:
        if old != path:
            # Rename first, so a crash mid-delete never leaves a half ckpt-* directory.
            doomed = out_dir / f".old-{old.name}-{uuid.uuid4().hex[:8]}"
            os.replace(old, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    return path


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``out_dir/latest`` names, else the newest complete ``ckpt-*``; or None."""
    out_dir = Path(out_dir)
    pointer = out_dir / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if _CKPT_RE.match(name) and (out_dir / name / STATE_FILE).is_file():
            return out_dir / name
    for _, path in reversed(_run_checkpoints(out_dir)):
        if (path / STATE_FILE).is_file():
            return path
    return None


# ----------------------------------------------------------------------------- loading

def _read_state(path: Path) -> dict[str, Any]:
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"corrupt {state_file}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{state_file} is not an attnkit checkpoint "
                              f"(expected format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{state_file} has version {state.get('version')!r}; this attnkit "
                              f"reads version {VERSION}")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{state_file}: 'step' must be an int >= 0, got {step!r}")
    for key, kind in (("model_aliases", dict), ("rng", list), ("metrics", list),
                      ("extra", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{state_file}: {key!r} must be a {kind.__name__}")
    return state


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file.parent} is not a complete checkpoint: {file.name} is "
                              f"missing")
    try:
        return _safetensors().load_file(file, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(f"corrupt {file}: {error}") from error


def _rebuild_optimizer_state(meta: Any, tensors: dict[str, torch.Tensor],
                             where: Path) -> dict[str, Any]:
    try:
        state: dict[int, dict[str, Any]] = {}
        for name, (param_index, key) in meta["tensors"].items():
            state.setdefault(int(param_index), {})[key] = tensors[name]
        for param_index, scalars in meta["scalars"].items():
            state.setdefault(int(param_index), {}).update(scalars)
        groups = meta["param_groups"]
        if not isinstance(groups, list):
            raise TypeError("param_groups is not a list")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"optimizer state in {where} does not match its index in "
                              f"{STATE_FILE}: {error!r}") from error
    return {"state": state, "param_groups": groups}


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint must be a directory, got file {path}")
    if (path / STATE_FILE).exists() or (path / MODEL_FILE).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"no checkpoint in {path}: it has no {STATE_FILE} and no "
                              f"complete ckpt-* directory")
    return latest


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    strict: bool = True) -> Checkpoint:
    """Read a checkpoint (tensors on CPU) and optionally load it into ``model``/``optimizer``.

    Args:
        path: a checkpoint directory, or a run directory (its latest checkpoint is read).
        model: when given, ``model.load_state_dict`` (tied weights stay tied: the model's
            shared parameters receive the same stored tensor).
        optimizer: when given, its state is restored (the checkpoint must have one).
        strict: passed to ``load_state_dict``.

    Returns:
        the :class:`Checkpoint`. RNG states are returned, not applied (see
        :func:`set_rng_state`).

    Raises:
        CheckpointError: missing directory/file, corrupt JSON or safetensors, or a
            checkpoint that does not fit the model/optimizer.
    """
    path = _resolve(Path(path))
    state = _read_state(path)
    model_state = _read_tensors(path / MODEL_FILE)
    for alias, target in state["model_aliases"].items():
        if target not in model_state:
            raise CheckpointError(f"{path}: alias {alias!r} names {target!r}, which is not in "
                                  f"{MODEL_FILE}")
        model_state[alias] = model_state[target]
    optimizer_state = None
    if state.get("optimizer") is not None:
        optimizer_tensors = _read_tensors(path / OPTIMIZER_FILE)
        optimizer_state = _rebuild_optimizer_state(state["optimizer"], optimizer_tensors, path)
    if model is not None:
        try:
            model.load_state_dict(model_state, strict=strict)
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not fit the model: {error}") from error
    if optimizer is not None:
        if optimizer_state is None:
            raise CheckpointError(f"{path} has no optimizer state to load")
        _load_optimizer(optimizer, optimizer_state, path)
    return Checkpoint(path=path, step=state["step"], state=state, model_state=model_state,
                      optimizer_state=optimizer_state, rng=state["rng"])


def _load_optimizer(optimizer: torch.optim.Optimizer, optimizer_state: dict[str, Any],
                    path: Path) -> None:
    groups = []
    if len(optimizer_state["param_groups"]) != len(optimizer.param_groups):
        raise CheckpointError(f"{path} has {len(optimizer_state['param_groups'])} optimizer "
                              f"param groups, the optimizer has {len(optimizer.param_groups)}")
    for saved, current in zip(optimizer_state["param_groups"], optimizer.param_groups,
                              strict=True):
        # JSON turned tuples (e.g. AdamW's betas) into lists; give them back their type.
        groups.append({key: tuple(value) if isinstance(current.get(key), tuple)
                       and isinstance(value, list) else value for key, value in saved.items()})
    try:
        optimizer.load_state_dict({"state": optimizer_state["state"], "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not fit the optimizer: {error}") from error
