"""``attnkit bench train``'s deterministic columns: Python calls and nn.Module calls per
training step, and the small-model overhead they measure (issue 17: small models pay no
tax), counted instead of timed."""

from __future__ import annotations

import pytest
import torch

from attnkit.bench.train import PlainGPT, _train_step, python_calls
from attnkit.models.gpt import GPT, GPTConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _helper() -> None:
    return None


def test_python_calls_counts_python_and_builtin_calls_and_modules():
    def step() -> None:
        _helper()
        len(())

    assert python_calls(step) == (3, 0)  # step, _helper, len
    linear = torch.nn.Linear(2, 2)
    calls, modules = python_calls(lambda: linear(torch.zeros(1, 2)))
    assert modules == 1 and calls > 3


def _steps(config: GPTConfig):
    torch.manual_seed(0)
    models = {"attnkit": GPT(config).train(), "plain": PlainGPT(config, use_sdpa=True).train()}
    steps = {name: _train_step(model, 2, config.context_len, config.vocab_size)
             for name, model in models.items()}
    for step in steps.values():  # fill the caches
        step()
        step()
    return models, steps


def test_a_gpt_step_makes_no_more_python_calls_than_plain_sdpa_outside_the_parameter_walk():
    """The bench's configuration (4 layers; smaller widths, the counts do not depend on
    them). Outside ``model.parameters()`` (clip_grad_norm_ walks every module, and attnkit's
    GPT has more of them: the q/k/v views of the stacked projection, the MLP and embedding
    wrappers, GELU), a training step makes no more Python calls than the plain-torch SDPA
    model; per block it makes two more nn.Module calls (the FeedForward wrapper and GELU)."""
    config = GPTConfig(vocab_size=65, context_len=16, num_layers=4, num_heads=4, d_model=32,
                       dropout=0.0)
    models, steps = _steps(config)
    counted = {}
    for name, step in steps.items():
        calls, modules = python_calls(step)
        walk = python_calls(lambda m=models[name]: list(m.parameters()))[0]
        counted[name] = (calls - walk, modules)
    assert counted["attnkit"][0] <= counted["plain"][0], counted
    assert counted["attnkit"][1] == counted["plain"][1] + 2 * 4 + 1, counted  # + embed wrapper
