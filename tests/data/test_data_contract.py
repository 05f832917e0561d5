"""The entry-point contract for ``attnkit data``: every subcommand against every class of bad
argument exits 2 with exactly one line on stderr, no traceback, and before any work.

"Work" is building, fetching, extracting or loading: those functions are replaced by ones
that fail the test if called, and the data directory must stay untouched.
"""

from __future__ import annotations

import pytest

from attnkit.data.translation import build as build_module
from attnkit.data.translation import corpus as corpus_module
from attnkit.data.translation import fetch as fetch_module

ACTIONS = ("build", "fetch", "info")


@pytest.fixture
def no_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in ((build_module, "build_corpus"), (fetch_module, "fetch_debian"),
                         (fetch_module, "extract_debs"), (corpus_module, "load_corpus")):
        monkeypatch.setattr(module, name, forbidden)


@pytest.fixture
def paths(tmp_path):
    """Named paths: a regular file, a folder, and places that cannot be written."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    (tmp_path / "folder").mkdir()
    return {"file": str(afile), "below_file": str(afile / "sub"), "missing":
            str(tmp_path / "missing"), "folder": str(tmp_path / "folder"),
            "proc": "/proc/attnkit-cannot-write-here", "empty": ""}


def bad_arguments(action: str, paths: dict) -> list[list[str]]:
    """Argument lists, each with exactly one bad value, for ``attnkit data <action>``."""
    good_dir = ["--data-dir", paths["folder"]]
    cases = [
        [],                                                   # --lang missing
        ["--lang", "es", *good_dir],                          # not a language
        ["--lang", "", *good_dir],
        ["--lang", "../fr", *good_dir],                       # traversal in a name
        ["--lang", "fr", "--bogus", *good_dir],               # unknown flag
        ["--lang", "fr", "--data-dir"],                       # flag without its value
    ]
    for where in ("file", "below_file", "proc", "empty") if action != "info" else (
            "file", "empty"):
        cases.append(["--lang", "fr", "--data-dir", paths[where]])
    if action in ("build", "fetch"):
        for value in ("0", "-5", "259", "inf", "nan", "-inf", "1e3", "many", "", "8000.5",
                      "True"):
            cases.append(["--lang", "fr", *good_dir, "--vocab-size", value])
    if action == "build":
        for where in ("missing", "file", "empty"):
            cases.append(["--lang", "fr", *good_dir, "--roots", paths[where]])
        cases.append(["--lang", "fr", *good_dir, "--roots", paths["folder"], paths["missing"]])
        cases.append(["--lang", "fr", *good_dir, "--roots"])
    if action == "fetch":
        for where in ("missing", "file", "empty"):
            cases.append(["--lang", "fr", *good_dir, "--debs", paths[where]])
        cases.append(["--lang", "fr", *good_dir, "--debs", paths["folder"], "--keep-debs"])
    return cases


def case_ids():
    # Ids need the case list without tmp paths; the index is stable for a given action.
    return [f"{action}-{i}" for action in ACTIONS
            for i in range(len(bad_arguments(action, dict.fromkeys(
                ("file", "below_file", "missing", "folder", "proc", "empty"), "x"))))]


@pytest.mark.parametrize("case", case_ids())
def test_bad_argument_exits_2_with_one_line_before_any_work(case, attnkit_main, paths,
                                                            no_work, tmp_path, capsys):
    action, index = case.rsplit("-", 1)
    argv = ["data", action, *bad_arguments(action, paths)[int(index)]]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = attnkit_main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, captured.err)
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in captured.err, (
        argv, captured.err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created


@pytest.mark.parametrize("argv", [["data"], ["data", "nope"], ["data", "--lang", "fr"]])
def test_bad_actions_exit_2_with_one_line(argv, attnkit_main, capsys):
    assert attnkit_main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("action", ACTIONS)
def test_help_exits_0(action, attnkit_main, capsys):
    assert attnkit_main(["data", action, "--help"]) == 0
    assert "--lang" in capsys.readouterr().out
