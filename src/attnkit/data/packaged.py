"""Data files that Debian packages ship: downloaded with apt, unpacked, never installed.

Two datasets of the experiments come as Debian packages:

- ``images``: ``dataset-fashion-mnist`` (the four gzipped IDX files of Fashion-MNIST, 60,000
  training and 10,000 test images of 28x28) -> ``DATA_DIR/fashion-mnist/``;
- ``glyphs``: ``unifont`` (``unifont.hex``, about 57,000 glyph bitmaps of 16x16 and 8x16)
  -> ``DATA_DIR/unifont/``.

:func:`fetch_packaged` runs ``apt-get download`` (or takes a ``.deb`` you already have),
streams the package's file tree through :func:`attnkit.data.archive.extract_members` (only
the named files, no links, size caps), checks every expected file arrived, and swaps the
finished folder into place with a rename, so a crash leaves the old folder or the new one.
:func:`packaged_dir` finds the files: the data directory first, then the folder where an
installed package keeps them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from attnkit.data.archive import extract_members
from attnkit.data.errors import DataError
from attnkit.data.paths import default_data_dir, display_path

__all__ = ["PACKAGED", "Packaged", "fetch_packaged", "packaged_dir"]


@dataclass(frozen=True)
class Packaged:
    """One dataset inside one Debian package."""

    package: str  # the Debian package name
    system_dir: str  # where the installed package keeps the files
    folder: str  # the folder under the data directory
    files: tuple[str, ...]  # the files to take (names inside system_dir)
    max_bytes: int  # the largest file expected, with room to spare


PACKAGED: dict[str, Packaged] = {
    "images": Packaged(
        package="dataset-fashion-mnist", system_dir="/usr/share/datasets/fashion-mnist",
        folder="fashion-mnist",
        files=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        max_bytes=64 << 20),
    "glyphs": Packaged(package="unifont", system_dir="/usr/share/unifont", folder="unifont",
                       files=("unifont.hex",), max_bytes=32 << 20),
}


def _spec(name: str) -> Packaged:
    if name not in PACKAGED:
        raise ValueError(f"name: expected one of {sorted(PACKAGED)}, got {name!r}")
    return PACKAGED[name]


def packaged_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding every file of dataset ``name`` ("images" or "glyphs").

    Looks in ``data_dir/<folder>`` (default data directory: ``$ATTNKIT_DATA`` or
    ``~/.cache/attnkit``), then in the installed package's folder. Raises
    :class:`~attnkit.data.errors.DataError` naming the command that fetches the files.
    """
    spec = _spec(name)
    base = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    for folder in (base / spec.folder, Path(spec.system_dir)):
        if all((folder / file).is_file() for file in spec.files):
            return folder
    raise DataError(f"the {name} dataset ({spec.package}) is not in {display_path(base)}; "
                    f"fetch it with: attnkit data fetch --{name}"
                    + ("" if data_dir is None else f" --data-dir {display_path(base)}"))


def _download(package: str, folder: Path) -> Path:
    from attnkit.data.translation.fetch import _require, _run

    _require("apt-get", "dpkg-deb")
    os.chmod(folder, 0o777)  # apt downloads as the unprivileged _apt user when it can
    _run(["apt-get", "download", "-q", package], cwd=folder)
    debs = sorted(folder.glob("*.deb"))
    if len(debs) != 1:
        raise DataError(f"apt-get download {package} left {len(debs)} .deb files, expected 1")
    return debs[0]


def _unpack(deb: Path, spec: Packaged, target: Path) -> None:
    from attnkit.data.translation.fetch import _package_info, _require

    _require("dpkg-deb")
    package, _ = _package_info(deb)
    if package != spec.package:
        raise DataError(f"{display_path(deb)} is package {package!r}, expected "
                        f"{spec.package!r}")
    inside = PurePosixPath(spec.system_dir.lstrip("/"))
    wanted_paths = {inside / file for file in spec.files}
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb.absolute())],
                              stdout=subprocess.PIPE, stderr=errors) as unpack:
            try:
                extract_members(unpack.stdout, target, wanted_paths.__contains__,
                                source=display_path(deb), max_member_bytes=spec.max_bytes,
                                max_total_bytes=len(spec.files) * spec.max_bytes)
            except BaseException:
                unpack.kill()
                raise
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    if unpack.returncode != 0:
        raise DataError(f"`dpkg-deb --fsys-tarfile {display_path(deb)}` failed: "
                        f"{message or 'no message'}")
    missing = [file for file in spec.files if not (target / inside / file).is_file()]
    if missing:
        raise DataError(f"{display_path(deb)} holds no {', '.join(missing)} under "
                        f"{spec.system_dir}")


def fetch_packaged(name: str, data_dir: str | os.PathLike | None = None, *,
                   deb: str | os.PathLike | None = None,
                   log: Callable[[str], None] | None = None) -> Path:
    """Download (or take ``deb``) and unpack dataset ``name`` into the data directory.

    Args:
        name: "images" (Fashion-MNIST) or "glyphs" (unifont), see :data:`PACKAGED`.
        data_dir: the data directory (default ``$ATTNKIT_DATA`` or ``~/.cache/attnkit``).
        deb: a ``.deb`` of the package already on disk; nothing is downloaded then.
        log: called with one line per stage.

    Returns:
        the dataset's folder, ``data_dir/<folder>``, replaced as a whole (rename) once every
        file is in. Raises :class:`~attnkit.data.errors.DataError` without apt-get/dpkg-deb,
        for a download that fails, a package of another name or one missing a file.
    """
    spec = _spec(name)
    say = log or (lambda line: None)
    base = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{spec.folder}-", dir=base))
    try:
        if deb is None:
            say(f"downloading {spec.package} with apt-get download")
            deb = _download(spec.package, work)
        else:
            deb = Path(deb)
            if not deb.is_file():
                raise DataError(f"--deb: {display_path(deb)} is not a file")
        say(f"unpacking {', '.join(spec.files)} from {display_path(Path(deb).name)}")
        extract = work / "extract"
        extract.mkdir()
        _unpack(Path(deb), spec, extract)
        fresh = work / spec.folder
        os.replace(extract / spec.system_dir.lstrip("/"), fresh)
        final, old = base / spec.folder, work / "old"
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(fresh, final)
        except BaseException:
            if old.exists() and not final.exists():
                os.replace(old, final)  # put the previous copy back
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum((final / file).stat().st_size for file in spec.files)
    say(f"{name}: {len(spec.files)} files, {size / 2**20:.1f} MiB in {display_path(final)}")
    return final
