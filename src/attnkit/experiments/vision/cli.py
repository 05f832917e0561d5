"""``attnkit vision PART``: the vision experiments, one subcommand per part.

Each part lives in ``attnkit.experiments.vision.<part>`` and exposes ``HELP: str``,
``add_arguments(parser) -> None`` and ``run(args) -> int``; the part modules import nothing
heavy at module level. Parts are taken from :data:`PARTS`; one whose module does not exist
(yet) or fails to import is listed as unavailable, and the other parts keep working.

``--data-dir`` is only read (it holds ``fashion-mnist/``): a given one that is not an existing
folder is refused here, for every part, rather than falling back to the system's copy.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from attnkit._validate import check_fits_in_memory
from attnkit.errors import UserError

__all__ = ["HELP", "PARTS", "add_parser", "run"]

HELP = "vision experiments on Fashion-MNIST: channel, glimpse, caption, vit"
PARTS = ("channel", "glimpse", "caption", "vit")


def _load(part: str) -> ModuleType | str:
    """The part's module, or why it is unavailable."""
    name = f"attnkit.experiments.vision.{part}"
    try:
        if importlib.util.find_spec(name) is None:
            return "not installed in this version"
        return importlib.import_module(name)
    except ImportError as exc:
        return f"cannot be imported ({exc})"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vision`` and its parts."""
    parser = subparsers.add_parser(
        "vision", help=HELP,
        description="Attention in vision models on real Fashion-MNIST images (Debian's "
                    "dataset-fashion-mnist; `attnkit data fetch --images`). Every part has "
                    "--help and a --quick preset and writes a report directory.")
    parts = parser.add_subparsers(dest="vision_part", metavar="PART")
    parts.required = True
    for part in PARTS:
        module = _load(part)
        if isinstance(module, str):
            sub = parts.add_parser(part, help=f"(unavailable: {module})")
            sub.set_defaults(vision_unavailable=module)
            continue
        sub = parts.add_parser(part, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
    return parser


def _check_memory(args: argparse.Namespace, part: str) -> None:
    """The CNN parts: flags each within bounds whose product cannot fit in memory, from a lower
    bound of one batch's widest convolution output (batch, width, side, side)."""
    from attnkit.experiments.vision.config import PRESETS, ChannelConfig, GlimpseConfig

    defaults = {"channel": ChannelConfig, "glimpse": GlimpseConfig}[part]()
    preset = PRESETS[part] if args.quick else {}

    def value(name: str):
        given = getattr(args, name, None)
        return given if given is not None else preset.get(name, getattr(defaults, name))

    batch = value("batch_size")
    width = max([*value("widths"), *(value("cnn_widths") if part == "glimpse" else [])])
    side = value("image_size") if part == "glimpse" else 28
    check_fits_in_memory(4.0 * batch * width * side * side, "--batch-size",
                         f"a batch of {batch} images of {side}x{side} through {width} channels")


def canvas_bytes() -> int:
    """Bytes one caption canvas holds at once: its uint8 pixels, their float copy and the
    cached float annotation vectors, for the canvas size :func:`~attnkit.data.images.
    derived.canvases` draws by default and the grid and width of the default
    :class:`~attnkit.models.vision.show_attend_tell.CanvasEncoder`."""
    import inspect

    from attnkit.data.images.derived import canvases
    from attnkit.experiments.vision._caption_run import STRIDE
    from attnkit.models.vision.show_attend_tell import CanvasEncoder

    size = inspect.signature(canvases).parameters
    height, width = size["height"].default, size["width"].default
    channels = inspect.signature(CanvasEncoder).parameters["widths"].default[-1]
    return height * width * (1 + 4) + (height // STRIDE) * (width // STRIDE) * channels * 4


def _check_caption_memory(args: argparse.Namespace) -> None:
    """caption: every canvas of the three splits is built, converted to floats and encoded
    at once, so ``--train-canvases`` has a memory bound below its own range."""
    from attnkit.experiments.vision._caption_config import PRESETS, CaptionConfig

    values = {**vars(CaptionConfig()), **(PRESETS["quick"] if args.quick else {})}
    if args.train_canvases is not None:
        values["train_canvases"] = args.train_canvases
    count = values["train_canvases"] + values["val_canvases"] + values["test_canvases"]
    check_fits_in_memory(float(canvas_bytes() * count), "--train-canvases",
                         f"{count:,} canvases (pixels and annotation vectors)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen part."""
    part = args.vision_part
    reason = getattr(args, "vision_unavailable", None)
    if reason is not None:
        raise UserError(f"attnkit vision {part}: this part is {reason}")
    module = _load(part)
    if isinstance(module, str):
        raise UserError(f"attnkit vision {part}: this part is {module}")
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        what = "is not a folder" if Path(data_dir).expanduser().exists() else "does not exist"
        raise UserError(f"--data-dir: {data_dir} {what}; it should hold Fashion-MNIST "
                        f"(`attnkit data fetch --images --data-dir {data_dir}` puts it there)")
    if part in ("channel", "glimpse"):
        _check_memory(args, part)
    elif part == "caption":
        _check_caption_memory(args)
    return module.run(args)
