"""The layer rule of DESIGN.md §1: imports point only downward.

Every ``import attnkit...`` in ``src/attnkit`` (top of module or inside a function) is read
with ``ast`` and checked against the layer table below; a module may import its own layer
and any lower one. The table is the architecture page's diagram, as data.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attnkit"

# Highest layer first. A module's layer is the longest matching prefix of its dotted name.
LAYERS: list[tuple[str, ...]] = [
    ("attnkit.cli", "attnkit.__main__"),
    ("attnkit.bench", "attnkit.check"),
    ("attnkit.experiments",),
    ("attnkit.interp", "attnkit.distributed", "attnkit.hf"),
    ("attnkit.models",),
    ("attnkit.train", "attnkit.data"),
    ("attnkit.nn",),
    ("attnkit.functional", "attnkit.masks", "attnkit.score_mods", "attnkit.testing"),
    ("attnkit.kernels",),
    ("attnkit._io", "attnkit._validate", "attnkit.errors"),
]
PACKAGE_ROOT = "attnkit"  # attnkit/__init__.py: the public facade, above functional


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from attnkit import masks` names a submodule: judge the submodule.
            for alias in node.names:
                candidate = f"{name}.{alias.name}"
                if (SRC.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                        (SRC.parent / candidate.replace(".", "/")).is_dir():
                    found.append((node.lineno, candidate))
                else:
                    found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "attnkit"]


MODULES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_module_name(p) for p in MODULES
               if _module_name(p) != PACKAGE_ROOT and _layer(_module_name(p)) is None]
    assert not missing, f"modules outside the layer table (add them to LAYERS): {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path: Path):
    module = _module_name(path)
    if module == PACKAGE_ROOT:
        return  # the facade re-exports from below; nothing imports it from inside
    own = _layer(module)
    upward = []
    for line, name in _imports(path):
        if name == PACKAGE_ROOT:
            upward.append(f"line {line}: imports the package facade 'attnkit' (import the "
                          f"module that defines the name instead)")
            continue
        target = _layer(name)
        assert target is not None, f"{module} line {line}: {name} is outside the layer table"
        if target < own:
            upward.append(f"line {line}: {name}")
    assert not upward, f"{module} imports a higher layer: " + "; ".join(upward)


def test_layer_table_orders_the_layers():
    # The checker itself: a functional module importing a model must be flagged.
    assert _layer("attnkit.functional.attention") > _layer("attnkit.models.gpt")
    assert _layer("attnkit.kernels.tiled") > _layer("attnkit.functional")
    assert _layer("attnkit.errors") == len(LAYERS) - 1
