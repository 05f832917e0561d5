"""Checkpoints: bit-exact round trip, tied weights, RNG states, rotation, corruption errors."""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from attnkit.train.checkpoint import (
    CheckpointError,
    checkpoint_path,
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_run_checkpoint,
    set_rng_state,
)
from attnkit.train.trainer import TrainConfig, build_optimizer

_spec = importlib.util.spec_from_file_location("_attnkit_train_script",
                                               Path(__file__).with_name("_train_script.py"))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def trained_model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = script.TinyLM(dropout=0.1)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2, warmup_steps=0))
    for step in range(3):
        batch = script.make_batch(step)
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype, key
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            assert_state_dicts_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def test_round_trip_is_bit_exact(tmp_path):
    model, optimizer = trained_model_and_optimizer()
    path = save_checkpoint(tmp_path / "ck", model=model, optimizer=optimizer, step=3,
                           config=TrainConfig(), model_config={"dim": 16},
                           scheduler={"step": 3}, metrics=[{"step": 1, "loss": 2.5}],
                           extra={"note": "x"})
    fresh_model, fresh_optimizer = trained_model_and_optimizer(seed=1)
    ckpt = load_checkpoint(path, model=fresh_model, optimizer=fresh_optimizer)
    assert ckpt.step == 3
    assert ckpt.state["model_config"] == {"dim": 16}
    assert ckpt.state["config"]["betas"] == [0.9, 0.98]
    assert ckpt.state["metrics"] == [{"step": 1, "loss": 2.5}]
    assert ckpt.state["scheduler"] == {"step": 3}
    for (name, p), q in zip(model.state_dict().items(), fresh_model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    expected, got = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert got["param_groups"] == expected["param_groups"]  # betas back to a tuple
    assert got["state"].keys() == expected["state"].keys()
    for index in expected["state"]:
        assert_state_dicts_equal(expected["state"][index], got["state"][index])


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    model, _ = trained_model_and_optimizer()
    path = save_checkpoint(tmp_path / "ck", model=model)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "embed.weight" in keys and "head.weight" not in keys
    ckpt = load_checkpoint(path)
    assert ckpt.state["model_aliases"] == {"head.weight": "embed.weight"}
    assert ckpt.model_state["head.weight"] is ckpt.model_state["embed.weight"]
    fresh = script.TinyLM()
    load_checkpoint(path, model=fresh)
    assert fresh.head.weight is fresh.embed.weight
    assert torch.equal(fresh.head.weight, model.embed.weight)


class OverlappingViews(torch.nn.Module):
    """A buffer that is a slice of a parameter: same storage, different view."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
        self.register_buffer("first_row", self.weight.detach()[0])


def test_overlapping_views_are_saved_as_copies(tmp_path):
    module = OverlappingViews()
    path = save_checkpoint(tmp_path / "ck", model=module)
    state = load_checkpoint(path).model_state
    assert torch.equal(state["weight"], module.weight.detach())
    assert torch.equal(state["first_row"], torch.arange(3.0))


def test_rng_state_round_trip_through_json():
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    torch.randn(5), random.random(), np.random.standard_normal()  # has_gauss set
    state = json.loads(json.dumps(get_rng_state()))
    expected = (torch.rand(4), [random.random() for _ in range(3)],
                np.random.standard_normal(3))
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    set_rng_state(state)
    got = (torch.rand(4), [random.random() for _ in range(3)], np.random.standard_normal(3))
    assert torch.equal(expected[0], got[0])
    assert expected[1] == got[1]
    assert np.array_equal(expected[2], got[2])


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model, optimizer = trained_model_and_optimizer()
    path = save_checkpoint(tmp_path / "ck", model=model, optimizer=optimizer, step=3)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    fresh_model, fresh_optimizer = trained_model_and_optimizer(seed=1)
    load_checkpoint(path, model=fresh_model, optimizer=fresh_optimizer)
    assert torch.equal(fresh_model.mix.weight, model.mix.weight)


def test_run_directory_rotation_and_latest_pointer(tmp_path):
    model, optimizer = trained_model_and_optimizer()
    run = tmp_path / "run"
    (run / ".tmp-ckpt-00000009-leftover").mkdir(parents=True)  # from a killed save
    for step in (1, 2, 3, 4):
        save_run_checkpoint(run, step=step, keep_last=2, model=model, optimizer=optimizer)
    names = sorted(p.name for p in run.iterdir())
    assert names == ["ckpt-00000003", "ckpt-00000004", "latest"]
    assert (run / "latest").read_text().strip() == "ckpt-00000004"
    assert latest_checkpoint(run) == checkpoint_path(run, 4)
    assert load_checkpoint(run).step == 4  # a run directory resolves to its latest
    (run / "latest").write_text("../../etc\n")  # a bad pointer falls back to scanning
    assert latest_checkpoint(run) == checkpoint_path(run, 4)
    (tmp_path / "state.json").write_text("{}")  # ".." would name a folder with a state
    (run / "latest").write_text("..\n")
    assert latest_checkpoint(run) == checkpoint_path(run, 4)
    (run / "latest").unlink()
    save_checkpoint(checkpoint_path(run, 4), model=model, step=4)  # replacing is allowed
    assert latest_checkpoint(run) == checkpoint_path(run, 4)
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.fixture
def saved(tmp_path) -> Path:
    model, optimizer = trained_model_and_optimizer()
    return save_checkpoint(tmp_path / "ck", model=model, optimizer=optimizer, step=3)


def test_truncated_safetensors_is_a_checkpoint_error(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt .*model.safetensors"):
        load_checkpoint(saved)


def test_truncated_optimizer_file_is_a_checkpoint_error(saved):
    (saved / "optimizer.safetensors").write_bytes(b"\x08\x00")
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        load_checkpoint(saved)


def test_missing_state_json_is_a_checkpoint_error(saved):
    (saved / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json is missing"):
        load_checkpoint(saved)


def test_missing_model_file_is_a_checkpoint_error(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(saved)


@pytest.mark.parametrize("text, message", [
    ("{not json", "corrupt"),
    ("[1, 2]", "not an attnkit checkpoint"),
    ('{"format": "attnkit-checkpoint", "version": 99}', "version"),
])
def test_garbage_state_json_is_a_checkpoint_error(saved, text, message):
    (saved / "state.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)


def test_missing_or_empty_locations_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_checkpoint_that_does_not_fit_the_model(saved):
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(saved, model=script.TinyLM(dim=8))


def test_unserializable_config_is_refused(tmp_path):
    model, _ = trained_model_and_optimizer()
    with pytest.raises(CheckpointError, match="config"):
        save_checkpoint(tmp_path / "ck", model=model, config={"fn": object()})
    assert not (tmp_path / "ck").exists()
