"""Shared fixtures of the experiment tests: a tiny EN->FR corpus compiled from .mo catalogs
and one trained run."""

from __future__ import annotations

import pytest
from _translate_helpers import corpus_entries, train_args

from attnkit.cli import main
from attnkit.data import build_corpus, write_mo


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogs")
    write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", corpus_entries())
    data = tmp_path_factory.mktemp("data")
    build_corpus("fr", [root], data_dir=data, lookup_packages=False)
    return data


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """A transformer run of 6 updates: its report directory."""
    out = tmp_path_factory.mktemp("run") / "report"
    assert main(train_args(data_dir, out, "--model", "transformer")) == 0
    return out
