"""GPT with MultiHeadAttention's stacked q/k/v parameter: the GPT-2 initialization reaches
every row, and a training checkpoint (safetensors, where the q/k/v entries are views of
one parameter) restores the model and the optimizer exactly."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from attnkit.models.gpt import GPT, GPTConfig
from attnkit.train.checkpoint import load_checkpoint, save_checkpoint

CONFIG = dict(vocab_size=40, context_len=16, num_layers=2, num_heads=4, num_kv_heads=2,
              d_model=32, dropout=0.0)


def _step(model: GPT, optimizer: torch.optim.Optimizer, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(40, (3, 17), generator=g)
    loss = F.cross_entropy(model(data[:, :-1]).flatten(0, 1), data[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_initialization_reaches_every_stacked_row():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**CONFIG, "d_model": 128, "num_layers": 4}))
    for block in model.blocks:
        attn = block.self_attn
        assert torch.all(attn.in_proj_bias == 0)
        for projection in (attn.q_proj, attn.k_proj, attn.v_proj):
            assert abs(projection.weight.std().item() - 0.02) < 0.003
    # one tensor per block for q, k and v (weight and bias): 2 instead of 6
    names = [n for n, _ in model.named_parameters() if ".self_attn." in n]
    assert names[:2] == ["blocks.0.self_attn.in_proj_weight", "blocks.0.self_attn.in_proj_bias"]


def test_training_checkpoint_restores_model_and_optimizer(tmp_path):
    torch.manual_seed(1)
    model = GPT(GPTConfig(**CONFIG))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, optimizer, 0)
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, step=1)
    assert "blocks.1.self_attn.v_proj.bias" in load_checkpoint(tmp_path / "ckpt").model_state

    torch.manual_seed(2)  # different initial weights, overwritten by the load
    restored = GPT(GPTConfig(**CONFIG))
    restored_opt = torch.optim.AdamW(restored.parameters(), lr=1e-2)
    load_checkpoint(tmp_path / "ckpt", model=restored, optimizer=restored_opt)
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    # the next update is identical: the optimizer moments came back for the stacked rows
    assert _step(model, optimizer, 1) == _step(restored, restored_opt, 1)
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)
