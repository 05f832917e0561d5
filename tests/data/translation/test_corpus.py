"""Corpus building: normalization, filters, dedup, hash split, manifest, loading."""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess

import pytest

from attnkit.data import CorpusNotFoundError, DataError, build_corpus, corpus_dir, load_corpus
from attnkit.data.translation import catalogs as catalogs_module
from attnkit.data.translation.catalogs import CatalogRoot, find_catalogs
from attnkit.data.translation.filters import REJECT_RULES, deduplicate, reject_reason
from attnkit.data.translation.gettext import write_mo
from attnkit.data.translation.normalize import normalize
from attnkit.data.translation.split import split_key, split_of

NNBSP, NBSP = "\u202f", "\u00a0"


# ---------------------------------------------------------------------------- normalize

@pytest.mark.parametrize("raw, expected", [
    ("Cafe\u0301 ouvert", "Café ouvert"),  # NFC
    (f"Voulez-vous quitter{NNBSP}?", "Voulez-vous quitter ?"),
    (f"Nom{NBSP}:  le\tfichier\nici", "Nom : le fichier ici"),
    ("«\u2009texte\u2009»", "« texte »"),
    ("zero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen"),
    ("_Open the file", "Open the file"),
    ("Save _As", "Save As"),
    ("E_xit now", "Exit now"),
    ("Ou_vrir le fichier", "Ouvrir le fichier"),
    ("&File menu", "File menu"),
    ("Fi&le menu", "File menu"),
    ("~Save the page", "Save the page"),
    ("Pa~ges:", "Pages:"),
    ("Open (&O)", "Open"),
    ("Open (_O)", "Open"),
    ("Images && Color", "Images & Color"),
    ("Open the file...", "Open the file"),
    ("Ouvrir le fichier…", "Ouvrir le fichier"),
    ("Ouvrir le fichier ...", "Ouvrir le fichier"),
    ("  spaced   out  ", "spaced out"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", [
    "set file_name first", "LC_ALL is set", "Tom &amp; Jerry", "Balance at ~a", "~/config",
    "a_b and c_d",
])
def test_normalize_leaves_identifiers_entities_and_directives(raw):
    assert normalize(raw) == raw


def test_normalize_is_idempotent():
    for raw in ["_Open the file...", f"Quitter{NNBSP}?", "&File", "Pa~ges"]:
        assert normalize(normalize(raw)) == normalize(raw)


def test_normalize_rejects_non_strings():
    with pytest.raises(TypeError, match="text"):
        normalize(b"bytes")


# ------------------------------------------------------------------------------ filters

GOOD = ("Open the selected file", "Ouvrir le fichier sélectionné")


REJECT_CASES = [
    ("Open file", "Ouvrir le fichier", "word_count"),
    (" ".join(["word"] * 51), " ".join(["mot"] * 51), "word_count"),
    ("Version 1.2.3 and 4.5.6 or 7.8.9", "Version 1.2.3 et 4.5.6 ou 7.8.9", "not_text"),
    ("Sīstān va Balūchestān province", "province de Sistan-o-Balouchestan", "not_text"),
    ("Cannot open %s for reading", "Impossible d'ouvrir %s en lecture", "placeholder"),
    ("Cannot open the file %1$s", "Impossible d'ouvrir le fichier %1$s", "placeholder"),
    ("Cannot open %(name)s now", "Impossible d'ouvrir %(name)s", "placeholder"),
    ("Cannot open file {0} now", "Impossible d'ouvrir le fichier {0}", "placeholder"),
    ("Cannot open file {name} now", "Impossible d'ouvrir {name}", "placeholder"),
    ("Cannot open the file $x", "Impossible d'ouvrir le fichier $x", "placeholder"),
    ("Cannot open the file ${x}", "Impossible d'ouvrir le fichier ${x}", "placeholder"),
    ("Open the selected file", "Ouvrir le fichier %d", "placeholder"),
    ("Show <b>bold</b> text here", "Afficher le texte <b>gras</b> ici", "markup"),
    ("Tom &amp; Jerry show", "Le spectacle de Tom &amp; Jerry", "markup"),
    ("Set the file_name option", "Définir l'option file_name", "code"),
    ("Call getValue on the object", "Appeler getValue sur l'objet", "code"),
    ("Read the /etc/passwd file", "Lire le fichier /etc/passwd", "code"),
    ("Visit https://example.org for help", "Visitez https://example.org pour l'aide", "code"),
    ("Use the --verbose flag", "Utiliser l'option --verbose", "code"),
    ("Set the width=3 value", "Définir la valeur width=3", "code"),
    ("Bonjour tout le monde", "Bonjour tout le monde", "identical"),
    ("Open the file now", "Ouvrir le fichier maintenant, puis encore une fois le fichier "
                          "et encore une fois", "length_ratio"),
    ("Open the selected file", "Open the selected fichier", "not_target_language"),
    ("Windows Media Player file", "Fichier Windows Media Player", "not_target_language"),
    (*GOOD, None),
    ("Are you sure you want to quit?", "Voulez-vous vraiment quitter ?", None),
    ("constant expression expected", "expression constante attendue", None),
]


@pytest.mark.parametrize("english, target, rule", REJECT_CASES)
def test_reject_reason(english, target, rule):
    assert reject_reason(english, target, "fr") == rule


def test_every_rule_is_exercised():
    covered = {rule for _, _, rule in REJECT_CASES}
    assert set(REJECT_RULES) <= covered


def test_german_target_check():
    assert reject_reason("Open the selected file", "Die ausgewählte Datei öffnen", "de") is None
    assert reject_reason(GOOD[0], "Open the selected Datei", "de") == "not_target_language"
    with pytest.raises(ValueError, match="lang"):
        reject_reason(*GOOD, "xx")


# -------------------------------------------------------------------------------- dedup

def test_deduplicate_picks_most_frequent_then_smallest_independent_of_order():
    pairs = [("Open the file", "Ouvrir le fichier"), ("Open the file", "Ouvre le fichier"),
             ("Open the file", "Ouvrir le fichier"), ("Close it now", "Fermer maintenant"),
             ("Close it now", "Fermez maintenant")]
    expected = [("Close it now", "Fermer maintenant"), ("Open the file", "Ouvrir le fichier")]
    for seed in range(5):
        shuffled = pairs[:]
        random.Random(seed).shuffle(shuffled)
        assert deduplicate(shuffled) == expected


# -------------------------------------------------------------------------------- split

def test_split_key_folds_case_digits_and_punctuation():
    assert split_key("Copying file 12 of 300...") == "copying file 0 of 0"
    assert split_key("COPYING, file 7 of 9!") == split_key("Copying file 12 of 300...")


def test_templates_differing_by_digits_share_a_split():
    for template in ["Copying file {} of {}", "Page {} is blank", "Track {} could not load"]:
        splits = {split_of(template.format(a, b)) for a in range(30) for b in range(3)}
        assert len(splits) == 1


def test_split_fractions_are_about_one_percent():
    counts = {"train": 0, "valid": 0, "test": 0}
    for i in range(20000):
        counts[split_of(f"sentence number {i:x} with words {i * 7919:x}")] += 1
    assert 120 <= counts["test"] <= 280 and 120 <= counts["valid"] <= 280


# ------------------------------------------------------------------------------- build

COLORS = [("red", "rouge"), ("blue", "bleu"), ("green", "vert"), ("black", "noir"),
          ("white", "blanc"), ("grey", "gris"), ("yellow", "jaune"), ("pink", "rose")]
NOUNS = [("box", "cadre"), ("line", "trait"), ("label", "libellé"), ("button", "bouton"),
         ("panel", "panneau"), ("frame", "cadre"), ("border", "bord"), ("arrow", "curseur"),
         ("marker", "repère"), ("icon", "symbole")]
PLACES = [("toolbar", "barre d'outils"), ("sidebar", "panneau latéral"),
          ("status bar", "barre d'état"), ("header", "bandeau"), ("menu", "menu général")]


def generated_pairs(verb_en, verb_fr):
    return [(f"{verb_en} the {c} {n} in the {p}", f"{verb_fr} le {nf} {cf} dans le {pf}")
            for c, cf in COLORS for n, nf in NOUNS for p, pf in PLACES]


CATALOG_A = [
    (None, "_Open the selected file...", None, ("_Ouvrir le fichier sélectionné…",)),
    ("menu", "_Open the selected file...", None, ("Ouvrir le fichier sélectionné",)),
    (None, "Are you sure you want to quit?", None, (f"Voulez-vous vraiment quitter{NNBSP}?",)),
    (None, "Deleted one message from the list", "Deleted %d messages from the list",
     ("Un message supprimé de la liste", "%d messages supprimés de la liste")),
    (None, "Cannot open %s for reading", None, ("Impossible d'ouvrir %s en lecture",)),
    (None, "Show <b>bold</b> text here", None, ("Afficher le texte <b>gras</b> ici",)),
    (None, "Set the file_name option", None, ("Définir l'option file_name",)),
    (None, "&Print the current page", None, ("&Imprimer la page actuelle",)),
    (None, "Untranslated but present", None, ("",)),
    (None, "Copying file 1 of 3", None, ("Copie du fichier 1 sur 3",)),
    (None, "Copying file 2 of 3", None, ("Copie du fichier 2 sur 3",)),
]
CATALOG_B = [  # ISO-8859-1, big-endian, duplicates of A
    (None, "Are you sure you want to quit?", None, ("Voulez-vous vraiment quitter ?",)),
    (None, "Print the current page", None, ("Imprimer la page courante",)),
    (None, "Check for new mail now", None, ("Vérifier les nouveaux messages maintenant",)),
]


@pytest.fixture
def locale_root(tmp_path):
    root = tmp_path / "root"
    locale = root / "usr" / "share" / "locale"
    write_mo(locale / "fr" / "LC_MESSAGES" / "alpha.mo",
             CATALOG_A + [(None, e, None, (f,)) for e, f in generated_pairs("Show", "Afficher")])
    write_mo(locale / "fr_FR" / "LC_MESSAGES" / "beta.mo", CATALOG_B, charset="ISO-8859-1",
             byteorder=">")
    write_mo(locale / "fr_CA" / "LC_MESSAGES" / "gamma.mo", CATALOG_B)
    write_mo(locale / "de" / "LC_MESSAGES" / "alpha.mo", CATALOG_B)
    write_mo(locale / "fr" / "LC_TIME" / "dates.mo", CATALOG_B)
    write_mo(root / "app" / "po" / "fr.mo", [(None, "Hide the main window", None,
                                              ("Masquer la fenêtre principale",))])
    truncated = struct.pack("<7I", 0x950412DE, 0, 1000, 28, 8028, 0, 0) + b"\0" * 64
    (locale / "fr" / "LC_MESSAGES" / "corrupt.mo").write_bytes(truncated)
    return root


def test_find_catalogs_picks_language_dirs(locale_root):
    found = [p.relative_to(locale_root).as_posix() for p in find_catalogs(locale_root, "fr")]
    assert found == ["app/po/fr.mo", "usr/share/locale/fr/LC_MESSAGES/alpha.mo",
                     "usr/share/locale/fr/LC_MESSAGES/corrupt.mo",
                     "usr/share/locale/fr_FR/LC_MESSAGES/beta.mo"]
    assert [p.name for p in find_catalogs(locale_root, "de")] == ["alpha.mo"]


def build(root, data_dir, **kwargs):
    return build_corpus("fr", [root], data_dir=data_dir, lookup_packages=False, **kwargs)


def read_split(result, name):
    return [tuple(line.split("\t")) for line in
            (result.path / f"{name}.tsv").read_text(encoding="utf-8").splitlines()]


def test_build_writes_clean_deduplicated_splits(locale_root, tmp_path):
    result = build(locale_root, tmp_path / "data")
    assert result.built and result.path == tmp_path / "data" / "gettext-en-fr"
    pairs = {en: fr for name in ("train", "valid", "test") for en, fr in read_split(result, name)}
    assert pairs["Open the selected file"] in {"Ouvrir le fichier sélectionné"}
    assert pairs["Are you sure you want to quit?"] == "Voulez-vous vraiment quitter ?"
    assert pairs["Print the current page"] == "Imprimer la page actuelle"  # tie -> smallest
    assert pairs["Check for new mail now"] == "Vérifier les nouveaux messages maintenant"
    assert pairs["Deleted one message from the list"] == "Un message supprimé de la liste"
    assert pairs["Hide the main window"] == "Masquer la fenêtre principale"
    for rejected in ["Cannot open %s for reading", "Set the file_name option",
                     "Untranslated but present"]:
        assert rejected not in pairs and normalize(rejected) not in pairs
    assert not any("<b>" in en for en in pairs)
    assert len(pairs) == 8 + len(generated_pairs("Show", "Afficher"))
    for name in ("train", "valid", "test"):
        for en, fr in read_split(result, name):
            assert split_of(en) == name and "\t" not in fr and fr == normalize(fr)


def test_manifest_records_sources_stages_and_hashes(locale_root, tmp_path):
    manifest = build(locale_root, tmp_path / "data").manifest
    on_disk = json.loads((tmp_path / "data" / "gettext-en-fr" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["attnkit_version"] == __import__("attnkit").__version__
    assert manifest["target_language"] == "fr" and manifest["catalogs"] == 4
    assert manifest["catalogs_skipped"] == 1
    paths = [s["path"] for s in manifest["sources"]]
    assert paths == sorted(paths) and all(p.startswith(str(locale_root)) for p in paths)
    corrupt = next(s for s in manifest["sources"] if s["path"].endswith("corrupt.mo"))
    assert "truncated" in corrupt["error"] and corrupt["package"] is None
    beta = next(s for s in manifest["sources"] if s["path"].endswith("beta.mo"))
    assert beta["entries"] == 3 and beta["accepted"] == 3
    stages = manifest["stages"]
    assert [s["stage"] for s in stages] == ["entries", "untranslated", *REJECT_RULES,
                                            "duplicates"]
    for before, after in zip(stages, stages[1:], strict=False):
        assert after["remaining"] == before["remaining"] - after["removed"]
    assert stages[0]["remaining"] == sum(s.get("entries", 0) for s in manifest["sources"])
    assert stages[-1]["remaining"] == sum(v["pairs"] for v in manifest["splits"].values())
    assert {s["stage"]: s["removed"] for s in stages}["untranslated"] == 1
    for split in manifest["splits"].values():
        data = (tmp_path / "data" / "gettext-en-fr" / split["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == split["sha256"]
    assert set(manifest) == {  # nothing time- or machine-dependent beyond the sources
        "name", "format", "attnkit_version", "source_language", "target_language",
        "language_dirs", "filters", "split", "catalogs", "catalogs_skipped", "stages",
        "splits", "sources", "refused_members"}


def test_rebuild_is_byte_identical_and_skipped_without_force(locale_root, tmp_path):
    first = build(locale_root, tmp_path / "a")
    files = {p.name: p.read_bytes() for p in first.path.iterdir()}
    again = build(locale_root, tmp_path / "a")
    assert not again.built and again.manifest == first.manifest
    assert build(locale_root, tmp_path / "a", force=True).built
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == files
    other = build(locale_root, tmp_path / "b")
    assert {p.name: p.read_bytes() for p in other.path.iterdir()} == files


def test_adding_unrelated_pairs_moves_no_existing_pair(locale_root, tmp_path):
    before = build(locale_root, tmp_path / "a")
    write_mo(locale_root / "extra" / "fr" / "LC_MESSAGES" / "extra.mo",
             [(None, e, None, (f,)) for e, f in generated_pairs("Hide", "Masquer")])
    after = build(locale_root, tmp_path / "b")
    old = {en: name for name in ("train", "valid", "test") for en, _ in read_split(before, name)}
    new = {en: name for name in ("train", "valid", "test") for en, _ in read_split(after, name)}
    assert len(new) == len(old) + len(generated_pairs("Hide", "Masquer"))
    assert all(new[en] == name for en, name in old.items())
    assert {"valid", "test"} <= set(new.values())  # the split files are not all train


def test_extracted_package_roots_record_install_paths(locale_root, tmp_path):
    root = CatalogRoot(locale_root, package="demo-l10n", version="1:2.0-1")
    manifest = build_corpus("fr", [root], data_dir=tmp_path, lookup_packages=False).manifest
    alpha = next(s for s in manifest["sources"] if s["path"].endswith("alpha.mo"))
    assert alpha["path"] == "/usr/share/locale/fr/LC_MESSAGES/alpha.mo"
    assert (alpha["package"], alpha["version"]) == ("demo-l10n", "1:2.0-1")


def test_build_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        build(tmp_path / "missing", tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no fr catalogs"):
        build(tmp_path / "empty", tmp_path / "d")
    (tmp_path / "bad" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "bad" / "fr" / "LC_MESSAGES" / "x.mo").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 fr catalogs"):
        build(tmp_path / "bad", tmp_path / "d")


def test_unreadable_catalog_is_skipped_and_recorded(tmp_path):
    messages = tmp_path / "root" / "fr" / "LC_MESSAGES"
    write_mo(messages / "good.mo", [(None, *GOOD[:1], None, GOOD[1:])])
    (messages / "broken.mo").symlink_to(tmp_path / "nowhere.mo")
    manifest = build(tmp_path / "root", tmp_path / "data").manifest
    broken = next(s for s in manifest["sources"] if s["path"].endswith("broken.mo"))
    assert "cannot read" in broken["error"] and manifest["catalogs_skipped"] == 1
    assert manifest["splits"]["train"]["pairs"] + manifest["splits"]["valid"]["pairs"] + \
        manifest["splits"]["test"]["pairs"] == 1


def test_installed_packages_from_dpkg(monkeypatch):
    monkeypatch.setattr(catalogs_module.shutil, "which", lambda name: None)
    assert catalogs_module.installed_packages(["/usr/share/locale/fr/LC_MESSAGES/x.mo"]) == {}
    monkeypatch.setattr(catalogs_module.shutil, "which", lambda name: "/usr/bin/" + name)
    outputs = {"dpkg": "libc-l10n:amd64: /a.mo\ndiversion by x from: /b.mo\nfoo, bar: /c.mo\n",
               "dpkg-query": "libc-l10n\t2.36-9\nfoo\t1.0\n"}

    def fake_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 0, outputs[command[0]], "")

    monkeypatch.setattr(catalogs_module.subprocess, "run", fake_run)
    assert catalogs_module.installed_packages(["/a.mo", "/b.mo", "/c.mo"]) == {
        "/a.mo": ("libc-l10n", "2.36-9"), "/c.mo": ("foo", "1.0")}


# -------------------------------------------------------------------------------- load

def test_load_corpus_round_trip_and_verification(locale_root, tmp_path):
    result = build(locale_root, tmp_path)
    loaded = load_corpus("fr", tmp_path)
    assert loaded.train == read_split(result, "train") and loaded.split("test") == loaded.test
    assert loaded.manifest == result.manifest
    with pytest.raises(ValueError, match="name"):
        loaded.split("dev")
    (result.path / "valid.tsv").write_text("tampered\tfalsifié\n", encoding="utf-8")
    with pytest.raises(DataError, match="manifest hash"):
        load_corpus("fr", tmp_path)
    with pytest.raises(CorpusNotFoundError, match="attnkit data fetch --lang de"):
        load_corpus("de", tmp_path)


def test_data_dir_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNKIT_DATA", str(tmp_path))
    assert corpus_dir("de") == tmp_path / "gettext-en-de"
    with pytest.raises(ValueError, match="lang"):
        corpus_dir("es")


# ------------------------------------------------------------------------- robustness

def test_non_text_charset_catalog_is_skipped_and_recorded(tmp_path):
    """A zlib/base64 charset used to raise LookupError and abort the whole build."""
    messages = tmp_path / "root" / "fr" / "LC_MESSAGES"
    write_mo(messages / "good.mo", [(None, *GOOD[:1], None, GOOD[1:])])
    good = (messages / "good.mo").read_bytes()
    for codec in ("zlib", "base64"):
        # Same length as "UTF-8" padded, so the descriptors stay right.
        (messages / f"{codec}.mo").write_bytes(good.replace(b"charset=UTF-8",
                                                            f"charset={codec:<5}".encode()))
    manifest = build(tmp_path / "root", tmp_path / "data").manifest
    errors = {s["path"].rsplit("/", 1)[-1]: s.get("error") for s in manifest["sources"]}
    assert errors["good.mo"] is None and manifest["catalogs_skipped"] == 2
    assert "not a text encoding" in errors["zlib.mo"] and "'base64'" in errors["base64.mo"]


def test_special_and_oversized_catalogs_are_skipped(tmp_path, monkeypatch):
    from attnkit.data.translation import read as read_module

    messages = tmp_path / "root" / "fr" / "LC_MESSAGES"
    write_mo(messages / "good.mo", [(None, *GOOD[:1], None, GOOD[1:])])
    os.mkfifo(messages / "fifo.mo")  # reading it would block forever
    (messages / "zero.mo").symlink_to("/dev/zero")  # reading it would never end
    write_mo(messages / "big.mo", [(None, "word " * 400, None, ("mot " * 400,))])
    monkeypatch.setattr(read_module, "MAX_CATALOG_BYTES", 1000)
    source, _ = read_module.read_catalog(read_module.CatalogFile(
        "/big.mo", messages / "big.mo", None, None), max_bytes=1000)
    assert "more than the 1000-byte limit" in source["error"]
    manifest = build(tmp_path / "root", tmp_path / "data").manifest
    errors = {s["path"].rsplit("/", 1)[-1]: s.get("error") or "" for s in manifest["sources"]}
    assert "not a regular file" in errors["fifo.mo"] and "not a regular" in errors["zero.mo"]


def test_bad_build_arguments_name_the_argument(tmp_path, locale_root):
    with pytest.raises(TypeError, match="roots: expected a sequence"):
        build_corpus("fr", str(locale_root), data_dir=tmp_path)
    with pytest.raises(ValueError, match="lang"):
        build_corpus("es", [locale_root], data_dir=tmp_path)
    with pytest.raises(TypeError, match="force"):
        build_corpus("fr", [locale_root], data_dir=tmp_path, force=1)
    with pytest.raises(TypeError, match="config"):
        build_corpus("fr", [locale_root], data_dir=tmp_path, config={"min_words": 1})


def test_data_dir_that_is_a_file_is_a_data_error(tmp_path, locale_root):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="data_dir: cannot write a corpus"):
        build(locale_root, tmp_path / "afile")
    with pytest.raises(DataError, match="data_dir: cannot write a corpus"):
        build(locale_root, tmp_path / "afile" / "below")


def test_interrupted_build_keeps_the_previous_corpus(tmp_path, locale_root, monkeypatch):
    from attnkit.data.translation import build as build_module

    first = build(locale_root, tmp_path / "data")
    before = {p.name: p.read_bytes() for p in first.path.iterdir()}
    real_write = build_module.atomic_write_text
    written = []

    def write_then_stop(path, text):
        written.append(path.name)
        if len(written) == 2:
            raise KeyboardInterrupt  # Ctrl-C between two split files
        return real_write(path, text)

    monkeypatch.setattr(build_module, "atomic_write_text", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(locale_root, tmp_path / "data", force=True)
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == before
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["gettext-en-fr"]  # no leftovers
    assert load_corpus("fr", tmp_path / "data").manifest == first.manifest


def test_a_first_build_interrupted_leaves_no_corpus(tmp_path, locale_root, monkeypatch):
    from attnkit.data.translation import build as build_module

    def stop(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "atomic_write_json", stop)  # the manifest, written last
    with pytest.raises(KeyboardInterrupt):
        build(locale_root, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []
    with pytest.raises(CorpusNotFoundError):
        load_corpus("fr", tmp_path / "data")


@pytest.mark.parametrize("content, message", [
    (b"english only\n", "line 1: expected 'english<TAB>target'"),
    (b"a\tb\tc\n", "line 1: expected"),
    (b"a\tb", "truncated"),
    (b"\xff\tb\n", "not UTF-8"),
])
def test_damaged_split_files_are_data_errors_even_unverified(tmp_path, locale_root, content,
                                                             message):
    result = build(locale_root, tmp_path)
    (result.path / "valid.tsv").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_corpus("fr", tmp_path, verify=False)


@pytest.mark.parametrize("manifest", ["[]", "{}", '{"format": 1}', "not json"])
def test_damaged_manifests_are_data_errors(tmp_path, locale_root, manifest):
    result = build(locale_root, tmp_path)
    (result.path / "manifest.json").write_text(manifest)
    with pytest.raises(DataError, match="rebuild with --force"):
        load_corpus("fr", tmp_path)
    with pytest.raises(DataError, match="rebuild with --force"):
        build(locale_root, tmp_path)  # not silently kept as "already built"
    assert build(locale_root, tmp_path, force=True).built


def test_unlistable_folder_is_a_data_error(tmp_path, monkeypatch):
    def walk(root, onerror):
        onerror(PermissionError(13, "Permission denied", str(root)))
        return iter(())

    monkeypatch.setattr(catalogs_module.os, "walk", walk)
    with pytest.raises(DataError, match="cannot list catalog folder .*Permission denied"):
        find_catalogs(tmp_path, "fr")
