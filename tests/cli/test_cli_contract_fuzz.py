"""The entry-point contract, fuzzed over every command the parsers define.

For every leaf command (``attnkit check``, ``attnkit bench ring``, ``attnkit translate eval``,
...) the test walks the real argparse tree and derives bad values from each option's type:
integers and numbers just outside their bounds, NaN, inf and non-numbers; unknown choices;
empty lists and repeated entries; output paths that are files, under files or unwritable;
input paths that are missing; empty strings. Each case runs ``attnkit.cli.main`` in-process
and must exit 2 with exactly one line on stderr that names the option, no traceback, nothing
on stdout, nothing written, and no work started.

"No work started" is checked by guards: the first heavy call of every command (loading a
corpus or a dataset, training, timing, fetching) raises :class:`WorkStarted`, a
BaseException that no handler of the commands catches. The guards sit below the commands'
own checks, so nothing a command checks is skipped. Each leaf's valid base command must run
into its guard (:func:`test_every_valid_base_command_reaches_its_guard`): a refusal in a fuzz
case is the bad value's, not the base's.

Options are classified here; an option the table does not know (a new flag) fails
:func:`test_every_option_is_classified`, and so does an integer option without an upper
bound that is not listed with the reason a huge value is harmless or refused later.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import pytest

from attnkit import cli


class WorkStarted(BaseException):
    """Raised by a guard: the command went past its argument checks into real work."""


GUARDS = [  # (module, attribute): the first heavy call of each command
    ("attnkit.check", "run_check"),
    ("attnkit.bench.overhead", "run"),
    ("attnkit.bench.attention", "run"),
    ("attnkit.bench.attention", "memory_curve"),
    ("attnkit.bench.classic_additive", "run"),
    ("attnkit.bench.classic_linear", "run"),
    ("attnkit.bench.train", "run"),
    ("attnkit.bench.ring", "run"),
    ("attnkit.bench.hf", "run"),
    ("attnkit.experiments.translate.run", "_prepare"),
    ("attnkit.experiments.translate.run", "ensure_corpus"),
    ("attnkit.experiments.translate.translator", "load_checkpoint"),
    ("attnkit.experiments.longrange.run", "prepare_data"),
    ("attnkit.experiments.induction.run", "load_corpus"),
    ("attnkit.experiments.vision.channel_run", "load_fashion_mnist"),
    ("attnkit.experiments.vision.glimpse_run", "cluttered_splits"),
    ("attnkit.experiments.vision._caption_run", "prepare"),
    ("attnkit.experiments.vision._vit_run", "load_fashion_mnist"),
    ("attnkit.experiments.memory.run", "splits"),
    ("attnkit.experiments.snail.run", "load_glyph_sets"),
    ("attnkit.data.translation.build", "build_corpus"),
    ("attnkit.data.translation.fetch", "fetch_debian"),
    ("attnkit.data.translation.fetch", "extract_debs"),
    ("attnkit.data.packaged", "fetch_packaged"),
    ("attnkit.data.translation.corpus", "load_corpus"),
    ("attnkit.cli.inspect", "_translate_page"),
    ("attnkit.cli.inspect", "_gpt_page"),
    ("attnkit.cli.inspect", "_bert_page"),
]

OUT = ["--out", "{tmp}/out"]
#: leaf command -> a valid command line that reaches the command's guard. Placeholders:
#: {tmp} the test's folder, {file} a regular file, {folder} an empty folder, {glyphs} and
#: {images} data folders holding (empty) unifont and Fashion-MNIST files, {gpt} a GPT
#: checkpoint folder (its state.json only).
LEAVES: dict[tuple[str, ...], list[str]] = {
    ("check",): ["--quick", "--dtype", "float32", "--backends", "sdpa"],
    ("bench", "overhead"): ["--lengths", "64", "--repeats", "1", *OUT],
    ("bench", "attention"): ["--lengths", "64", "--repeats", "1", *OUT],
    ("bench", "classic"): ["--quick", *OUT],
    ("bench", "train"): ["--quick", *OUT],
    ("bench", "ring"): ["--worlds", "1", "--lengths", "64", "--repeats", "1", *OUT],
    ("bench", "hf"): ["--lengths", "64", "--window", "16", "--repeats", "1", *OUT],
    ("translate",): ["--quick", *OUT, "--data-dir", "{tmp}/data"],
    ("translate", "train"): ["--quick", *OUT, "--data-dir", "{tmp}/data"],
    ("translate", "eval"): ["{gpt}", "--data-dir", "{folder}"],
    ("translate", "text"): ["{gpt}", "Open the file"],
    ("translate", "compare"): ["--quick", "--models", "rnn-none", *OUT,
                               "--data-dir", "{tmp}/data"],
    ("longrange",): ["--quick", *OUT],
    ("induction",): ["--quick", *OUT, "--data-dir", "{tmp}/data"],
    ("vision", "channel"): ["--quick", *OUT, "--data-dir", "{images}"],
    ("vision", "glimpse"): ["--quick", *OUT, "--data-dir", "{images}"],
    ("vision", "caption"): ["--quick", *OUT, "--data-dir", "{images}"],
    ("vision", "vit"): ["--quick", *OUT, "--data-dir", "{images}"],
    ("memory",): ["--quick", *OUT],
    ("snail",): ["--quick", *OUT, "--data-dir", "{glyphs}"],
    ("pairs",): ["--quick", *OUT],
    ("data", "build"): ["--lang", "fr", "--data-dir", "{tmp}/data", "--roots", "{folder}"],
    ("data", "fetch"): ["--lang", "fr", "--data-dir", "{tmp}/data"],
    ("data", "info"): ["--lang", "fr", "--data-dir", "{folder}"],
    ("inspect",): ["{gpt}", "def f(x): return x", "--out", "{tmp}/page.html"],
}

#: bad values of the options that take a string, by kind
BAD_STRINGS = {
    "out_dir": ["{file}", "{file}/sub", "/proc/attnkit-fuzz", "", " "],
    "out_file": ["{tmp}", "{file}/sub/x.json", "/proc/attnkit-fuzz/x.json", ""],
    "in_dir": ["{file}", "{tmp}/missing", ""],
    "in_file": ["{folder}", "{tmp}/missing.deb", ""],
    "name": ["../x", "a/b", "/tmp/x", ".hidden", "", "a b"],
    "text": ["", "  "],
    "layer": ["nope", "99", "-99", ""],
    "checkpoint": ["{file}", "{tmp}/missing", ""],
}
#: (leaf, option) -> kind, for options whose values are strings; a leaf of None: every leaf
STRING_KINDS = {
    (None, "--out"): "out_dir",
    (None, "--data-dir"): "out_dir",
    (("inspect",), "--out"): "out_file",
    (None, "--json"): "out_file",
    (None, "--name"): "name",
    (None, "--roots"): "in_dir",
    (None, "--debs"): "in_dir",
    (None, "--deb"): "in_file",
    (None, "checkpoint"): "checkpoint",
    (None, "text"): "text",
    (("inspect",), "--layers"): "layer",
}
#: where an option's value is read, not written: a missing one is the error
for _leaf in [("translate", "eval"), ("data", "info"), ("snail",),
              *[("vision", part) for part in ("channel", "glimpse", "caption", "vit")]]:
    STRING_KINDS[(_leaf, "--data-dir")] = "in_dir"

#: a valid entry of each list option, for the repeated-entry case
LIST_ENTRY = {"--lengths": "64", "--worlds": "1", "--tasks": "1", "--hops": "1", "--ways": "5",
              "--shots": "1", "--seeds": "1", "--roots": "{folder}", "--layers": "0",
              "--widths": "8", "--cnn-widths": "8"}
#: list options where a repeated entry means something
REPEAT_OK = {("vision", "glimpse", "--widths"): "channels per block: [8, 8] is two blocks",
             ("vision", "glimpse", "--cnn-widths"): "channels per block"}

#: integer options without an upper bound, and why a huge value does no harm (or is refused
#: by a later check, which the fuzz then exercises with HUGE)
UNBOUNDED = {
    "--repeats": "time only: the user asked for that many timed runs",
    "--max-steps": "an upper bound on updates; the time budget ends the run",
    "--steps": "updates; the --minutes cap ends the run",
    "--warmup-steps": "checked against --max-steps",
    "--eval-every": "an interval: a huge one means at the end only",
    "--checkpoint-every": "an interval: a huge one means at the end and on Ctrl-C",
    "--test-limit": "'the first N pairs': a huge N is all of them",
    "--train-pairs": "'the first N pairs': documented, a large N means all",
    "--valid-episodes": "episodes are sampled one at a time; time only",
    "--test-episodes": "episodes are sampled one at a time; time only",
    "--train-size": "refused above the 55,000 training images by the config (HUGE)",
}
#: (leaf, option) -> a huge value that must be refused (memory, processes)
HUGE = {
    (("bench", "overhead"), "--lengths"): "1000000000",
    (("bench", "attention"), "--lengths"): "1000000000",
    (("bench", "ring"), "--lengths"): "1000000000",
    (("bench", "hf"), "--lengths"): "1000000000",
    (("vision", "channel"), "--train-size"): "55001",
    (("vision", "glimpse"), "--train-size"): "55001",
}


# ----------------------------------------------------------------------------- the tree

def _leaf_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    found = {}

    def walk(parser, path):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or path == ("translate",):  # translate alone is the main job
            found[path] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, (*path, name))

    for command in cli.COMMANDS:
        top = cli.build_parser(command)
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        walk(sub.choices[command], (command,))
    return found


LEAF_PARSERS = _leaf_parsers()


def _options(parser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._SubParsersAction, argparse._StoreTrueAction,
            argparse._StoreFalseAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def _name(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def _string_kind(leaf, action) -> str | None:
    name = _name(action)
    return STRING_KINDS.get((leaf, name), STRING_KINDS.get((None, name)))


def _bad_numbers(action) -> list[str]:
    kind = getattr(action.type, "__name__", None)
    if kind == "integer":
        values = ["abc", "1.5", "nan", "", "1e3"]
        low, high = action.type.minimum, action.type.maximum
        if low is not None:
            values.append(str(low - 1))
        if high is not None:
            values.append(str(high + 1))
        return values
    if kind == "number":
        values = ["nan", "inf", "-inf", "abc", ""]
        t = action.type
        if t.low is not None:
            values.append(repr(t.low) if t.low_open else repr(t.low - 1))
        if t.high is not None:
            values.append(repr(t.high) if t.high_open else repr(t.high * 2 + 1))
        return values
    return []


def _cases() -> list[tuple[tuple[str, ...], list[str], str]]:
    """(leaf, argv, what the error line must name)."""
    cases = []
    for leaf, parser in LEAF_PARSERS.items():
        base = LEAVES[leaf]
        positionals = [a for a in parser._actions if not a.option_strings
                       and not isinstance(a, argparse._SubParsersAction)]
        for action in _options(parser):
            name = _name(action)
            if not action.option_strings:  # a positional: replace it in the base
                index = positionals.index(action)
                for value in BAD_STRINGS[_string_kind(leaf, action)]:
                    argv = list(base)
                    argv[index] = value
                    cases.append((leaf, [*leaf, *argv], action.metavar or action.dest))
                continue
            values = _bad_numbers(action)
            if action.choices is not None:
                values += ["nope", ""] if action.type is None else ["3", "abc"]
            elif not values and _string_kind(leaf, action) is not None:
                values = BAD_STRINGS[_string_kind(leaf, action)]
            if (leaf, name) in HUGE:
                values.append(HUGE[(leaf, name)])
            for value in values:
                cases.append((leaf, [*leaf, *base, name, value], name))
            if action.nargs == "+":
                cases.append((leaf, [*leaf, *base, name], name))  # an empty list
                if (*leaf, name) not in REPEAT_OK:
                    entry = LIST_ENTRY.get(name) or sorted(map(str, action.choices))[0]
                    cases.append((leaf, [*leaf, *base, name, entry, entry], name))
        cases.append((leaf, [*leaf, *base, "--no-such-option"], "--no-such-option"))
    return cases


# ----------------------------------------------------------------------------- running

@pytest.fixture
def world(tmp_path, monkeypatch):
    """A folder with the placeholders' targets, the current directory and $ATTNKIT_DATA
    inside it, and every guard in place."""
    (tmp_path / "afile").write_text("a regular file")
    (tmp_path / "folder").mkdir()
    (tmp_path / "glyphs" / "unifont").mkdir(parents=True)
    (tmp_path / "glyphs" / "unifont" / "unifont.hex").write_text("0041:" + "0" * 32 + "\n")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    config = {"vocab_size": 300, "context_len": 64, "num_layers": 1, "num_heads": 2,
              "d_model": 16}
    (gpt / "state.json").write_text(json.dumps({"step": 1, "model_config": config}))
    images = tmp_path / "images" / "fashion-mnist"
    images.mkdir(parents=True)
    for name in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (images / f"{name}-{kind}-ubyte").write_bytes(b"")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("ATTNKIT_DATA", str(tmp_path / "cache"))

    def started(*args, **kwargs):
        raise WorkStarted

    for module, attribute in GUARDS:
        monkeypatch.setattr(f"{module}.{attribute}", started)
    return tmp_path


def _fill(argv: list[str], tmp: Path) -> list[str]:
    return [arg.format(tmp=tmp, file=tmp / "afile", folder=tmp / "folder",
                       glyphs=tmp / "glyphs", images=tmp / "images", gpt=tmp / "gpt")
            for arg in argv]


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


class _TimedOut(BaseException):
    pass


def _main(argv: list[str], seconds: float = 20.0) -> int:
    """``cli.main(argv)``'s exit code, argparse's SystemExit included; a case still running
    after ``seconds`` (real work the guards missed) is stopped."""
    def stop(*_):
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_refused(argv: list[str], names: str, tmp: Path, capsys) -> str:
    before = _tree(tmp)
    try:
        code = _main(argv)
    except WorkStarted:
        pytest.fail(f"work started before {names!r} was checked: {argv}")
    except _TimedOut:
        pytest.fail(f"still running after 20 s (work the guards do not cover): {argv}")
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    assert out == "", (argv, out)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n") and lines[0].strip(), (argv, err)
    assert "Traceback" not in err
    assert names.lower() in lines[0].lower(), (argv, lines[0])
    assert _tree(tmp) == before, f"{argv} wrote {set(_tree(tmp)) ^ set(before)}"
    return lines[0]


CASES = _cases()


@pytest.mark.parametrize("leaf, argv, names", CASES,
                         ids=[" ".join(argv) or "<empty>" for _, argv, _ in CASES])
def test_bad_value_exits_2_with_one_line_naming_it_before_any_work(leaf, argv, names, world,
                                                                    capsys):
    assert_refused(_fill(argv, world), names, world, capsys)


@pytest.mark.parametrize("leaf", sorted(LEAVES), ids=" ".join)
def test_every_valid_base_command_reaches_its_guard(leaf, world, capsys):
    with pytest.raises(WorkStarted):
        _main([*leaf, *_fill(LEAVES[leaf], world)])


def test_every_leaf_command_has_a_base_command():
    assert sorted(LEAF_PARSERS) == sorted(LEAVES)


def test_every_option_is_classified():
    """A new option must be given its bad values here (or be a flag, a choice, a number)."""
    unknown, unbounded = [], []
    for leaf, parser in LEAF_PARSERS.items():
        for action in _options(parser):
            name = _name(action)
            typed = getattr(action.type, "__name__", None) in ("integer", "number")
            if not typed and action.choices is None and _string_kind(leaf, action) is None:
                unknown.append(" ".join((*leaf, name)))
            if getattr(action.type, "__name__", None) == "integer" \
                    and action.type.maximum is None and name not in UNBOUNDED \
                    and (leaf, name) not in HUGE:
                unbounded.append(" ".join((*leaf, name)))
    assert unknown == [], "options with no bad values in this test"
    assert unbounded == [], "integer options with no upper bound and no reason"


def test_the_fuzz_covers_every_leaf():
    assert {leaf for leaf, _, _ in CASES} == set(LEAVES)
    assert len(CASES) > 500
    assert os.name == "posix"  # the case timer uses SIGALRM


# ----------------------------------------------------------------------------- combinations

#: options each valid alone that contradict each other, or that the command would ignore
#: (argv, the option the error must name)
COMBINATIONS = [
    # before an action, the action's parser put its defaults over them without a word
    (["translate", "--seed", "3", "train", "--quick", *OUT], "--seed"),
    (["translate", "--minutes", "5", "compare", "--quick", *OUT], "--minutes"),
    (["translate", "--out", "{tmp}/out", "eval", "{gpt}"], "--out"),
    (["translate", "--quick", "train", *OUT], "--quick"),
    # --resume with nothing to continue
    (["translate", "train", "--quick", "--resume", *OUT], "--resume"),
    (["translate", "--quick", "--resume", *OUT], "--resume"),
    (["translate", "compare", "--quick", "--models", "rnn-none", "--resume", *OUT], "--resume"),
    (["translate", "train", "--quick", "--warmup-steps", "500", "--max-steps", "100", *OUT],
     "--warmup-steps"),
    (["translate", "compare", "--quick", "--warmup-steps", "500", "--max-steps", "100",
      *OUT], "--warmup-steps"),
    (["translate", "train", "--quick", "--width", "99", *OUT], "--width"),
    (["translate", "compare", "--quick", "--width", "99", *OUT], "--width"),
    # each within its bounds, together beyond any memory
    (["translate", "train", "--quick", "--max-tokens", "1048576", "--vocab-size", "1000000",
      *OUT], "--max-tokens"),
    (["translate", "compare", "--quick", "--max-tokens", "1048576", "--vocab-size", "1000000",
      *OUT], "--max-tokens"),
    (["translate", "train", "--quick", "--width", "65536", "--layers", "1024", *OUT],
     "--width"),
    (["snail", "--quick", "--episodes-per-step", "4096", "--queries", "1000", "--ways", "100",
      "--shots", "20", "--channels", "1024", "--data-dir", "{glyphs}", *OUT],
     "--episodes-per-step"),
    (["memory", "--quick", "--batch-size", "100000", "--embed-dim", "4096", *OUT],
     "--batch-size"),
    (["vision", "glimpse", "--quick", "--batch-size", "65536", "--widths", "4096",
      "--data-dir", "{images}", *OUT], "--batch-size"),
    (["longrange", "--quick", "--min-len", "50", "--max-len", "40", *OUT], "--min-len"),
    (["longrange", "--quick", "--max-tokens", "30", "--max-len", "40", *OUT], "--max-tokens"),
    # a size given with --quick, which would put its own over it
    (["bench", "hf", "--quick", "--lengths", "4096", *OUT], "--lengths"),
    (["bench", "hf", "--quick", "--window", "8", *OUT], "--window"),
    (["bench", "hf", "--quick", "--repeats", "5", *OUT], "--repeats"),
    (["bench", "train", "--quick", "--repeats", "5", *OUT], "--repeats"),
    # timing options that --memory-curve does not use
    (["bench", "attention", "--memory-curve", "--cases", "dense", *OUT], "--cases"),
    (["bench", "attention", "--memory-curve", "--repeats", "2", *OUT], "--repeats"),
    (["bench", "attention", "--memory-curve", "--name", "x", *OUT], "--name"),
    (["bench", "attention", "--memory-curve", "--memory", *OUT], "--memory"),
    (["bench", "attention", "--memory-curve", "--lengths", "1000000000", *OUT], "--lengths"),
    (["bench", "attention", "--candidates", "triton", *OUT], "--candidates"),
    (["bench", "ring", "--heads", "8", "--kv-heads", "3", *OUT], "--kv-heads"),
    (["bench", "ring", "--worlds", "4", "--lengths", "100", *OUT], "--lengths"),
    (["bench", "ring", "--no-timing", "--repeats", "2", *OUT], "--repeats"),
    # 1,000,000 canvases hold about 37 GiB at once (pixels, floats, annotation vectors)
    (["vision", "caption", "--quick", "--train-canvases", "1000000", "--data-dir", "{images}",
      *OUT], "--train-canvases"),
    (["pairs", "--quick", "--clock", "wall", "--minutes", "10", "--max-minutes", "5", *OUT],
     "--minutes"),
    (["data", "fetch", "--images", "--debs", "{folder}"], "--debs"),
    (["data", "fetch", "--glyphs", "--vocab-size", "4000"], "--vocab-size"),
    (["data", "fetch", "--lang", "fr", "--deb", "{file}"], "--deb"),
    (["data", "fetch", "--lang", "fr", "--keep-debs", "--debs", "{folder}"], "--keep-debs"),
    (["data", "fetch", "--lang", "fr", "--images"], "--images"),
    (["inspect", "{gpt}", "text", "--layers", "0", "-1", "--out", "{tmp}/page.html"],
     "--layers"),
    (["inspect", "{gpt}", "text", "--layers", "decoder.0.cross_attn",
      "--out", "{tmp}/page.html"], "--layers"),
]


@pytest.mark.parametrize("argv, names", COMBINATIONS,
                         ids=[" ".join(argv) for argv, _ in COMBINATIONS])
def test_contradictory_or_ignored_options_exit_2(argv, names, world, capsys):
    assert_refused(_fill(argv, world), names, world, capsys)


@pytest.mark.parametrize("argv, guard", [
    (["translate", "--quick", "--seed", "3", *OUT], "_prepare"),  # the main job takes them
    (["translate", "compare", "--quick", "--models", "rnn-none", "--width", "99", *OUT],
     "_prepare"),  # a width the Transformer refuses is fine for an RNN
    (["bench", "hf", "--quick", *OUT], "hf"),
    (["bench", "train", "--quick", *OUT], "train"),
    (["bench", "attention", "--memory-curve", "--lengths", "64", *OUT], "memory_curve"),
    (["pairs", "--quick", "--clock", "wall", "--minutes", "4", "--max-minutes", "5", *OUT],
     "ensure_corpus"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_the_valid_forms_of_those_combinations_still_run(argv, guard, world, capsys):
    with pytest.raises(WorkStarted):
        _main(_fill(argv, world))


def test_the_recorded_bench_command_replays(world, monkeypatch, capsys):
    """Defaults filled in after the checks are recorded, and the recorded command is valid."""
    calls = []
    monkeypatch.setattr("attnkit.bench.hf.run", lambda **kwargs: calls.append(kwargs))
    out = str(world / "out")
    assert _main(["bench", "hf", "--quick", "--out", out]) == 0
    assert calls[0]["command"] == f"attnkit bench hf --implementations attnkit sdpa eager " \
                                  f"--layers 2 --max-dense-gib 6.0 --quick --name hf --out {out}"
    replay = calls[0]["command"].split()[1:]
    assert _main(replay) == 0 and len(calls) == 2
