"""SNAIL and the prototypical network: causality of every block and of the whole sequence
model, shapes, the layouts of the ablations, the receptive field of a TC block, prototypes
against a hand computation, and the config checks."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.protonet import ProtoNet
from attnkit.models.snail import (
    SNAIL,
    AttentionBlock,
    CausalConv1d,
    DenseBlock,
    SnailConfig,
    TCBlock,
)

SIZE = 20


def _changed_after(module, x: torch.Tensor, t: int) -> torch.Tensor:
    """Which output positions change when inputs after position ``t`` change."""
    other = x.clone()
    other[..., t + 1:] = torch.randn_like(other[..., t + 1:])
    with torch.no_grad():
        diff = (module(x) - module(other)).abs().amax(dim=(0, 1))  # (T,)
    return diff > 1e-6


@pytest.mark.parametrize("make", [
    lambda: CausalConv1d(6, 5, dilation=2),
    lambda: DenseBlock(6, 4, dilation=4),
    lambda: TCBlock(6, 11, 4),
    lambda: AttentionBlock(6, 8, 3),
])
def test_blocks_are_causal(make):
    torch.manual_seed(0)
    block = make().eval()
    x = torch.randn(3, 6, 11)  # (B, C, T)
    for t in (0, 4, 9):
        changed = _changed_after(block, x, t)
        assert not changed[:t + 1].any()  # outputs up to t ignore later inputs
        assert changed[t + 1:].any()  # and later outputs do read them


@pytest.mark.parametrize("layout", ["snail", "tc", "attention"])
def test_snail_output_at_step_t_ignores_later_inputs(layout):
    torch.manual_seed(1)
    model = SNAIL(SnailConfig(ways=3, shots=2, layout=layout, width=0.125, channels=8)).eval()
    channels = model.encoder.out_dim + 3
    x = torch.randn(2, channels, model.config.seq_len)
    for t in range(model.config.seq_len - 1):
        changed = _changed_after(model.sequence_logits, x, t)
        assert not changed[:t + 1].any()
        assert changed[-1]  # the query position reads the whole support set


def test_tc_block_receptive_field_covers_the_sequence():
    torch.manual_seed(2)
    block = TCBlock(4, 9, 3)  # ceil(log2 9) = 4 dense blocks: dilations 1, 2, 4, 8
    assert len(block.blocks) == 4 and block.out_channels == 4 + 4 * 3
    x = torch.randn(1, 4, 9, requires_grad=True)
    block(x)[0, -3:, -1].sum().backward()  # the new features at the last position
    assert (x.grad[0].abs().sum(0) > 0).all()  # depend on every earlier position


def test_snail_shapes_and_the_ablation_layouts():
    torch.manual_seed(3)
    ways, shots, queries, episodes = 4, 2, 3, 2
    support = torch.rand(episodes, ways * shots, 1, SIZE, SIZE)
    labels = torch.arange(ways).repeat(episodes, shots)
    query = torch.rand(episodes, queries, 1, SIZE, SIZE)
    kinds = {}
    for layout in ("snail", "tc", "attention"):
        model = SNAIL(SnailConfig(ways=ways, shots=shots, layout=layout, width=0.25,
                                  channels=8))
        logits = model(support, labels, query)
        assert logits.shape == (episodes, queries, ways) and torch.isfinite(logits).all()
        kinds[layout] = [type(b).__name__ for b in model.blocks]
    assert kinds["snail"] == ["AttentionBlock", "TCBlock", "AttentionBlock", "TCBlock",
                              "AttentionBlock"]
    assert kinds["tc"] == ["TCBlock", "TCBlock"]
    assert kinds["attention"] == ["AttentionBlock"] * 3
    with pytest.raises(ValueError, match="support_labels"):
        model(support[:, :-1], labels[:, :-1], query)


def test_snail_queries_are_classified_independently_and_use_the_labels():
    torch.manual_seed(4)
    model = SNAIL(SnailConfig(ways=3, shots=1, width=0.25, channels=8)).eval()
    support = torch.rand(1, 3, 1, SIZE, SIZE)
    labels = torch.tensor([[0, 1, 2]])
    query = torch.rand(1, 4, 1, SIZE, SIZE)
    with torch.no_grad():
        together = model(support, labels, query)
        alone = torch.cat([model(support, labels, query[:, i:i + 1]) for i in range(4)], 1)
        relabelled = model(support, torch.tensor([[2, 0, 1]]), query)
    torch.testing.assert_close(together, alone)
    assert not torch.allclose(together, relabelled)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="layout"):
        SnailConfig(layout="lstm")
    with pytest.raises(ValueError, match="ways"):
        SnailConfig(ways=0)
    with pytest.raises(ValueError, match="width"):
        SnailConfig(width=0.0)
    assert SnailConfig(width=1.0).block_sizes[0] == ("A", 64, 32)  # the paper's sizes
    assert SnailConfig(ways=20, shots=5).seq_len == 101


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    torch.manual_seed(5)
    model = ProtoNet(ways=2, channels=4).eval()
    support = torch.rand(1, 4, 1, SIZE, SIZE)
    labels = torch.tensor([[1, 0, 1, 0]])
    query = torch.rand(1, 3, 1, SIZE, SIZE)
    with torch.no_grad():
        logits = model(support, labels, query)
        emb = model.encoder(support[0])
        q = model.encoder(query[0])
    prototypes = torch.stack([emb[[1, 3]].mean(0), emb[[0, 2]].mean(0)])
    expected = -((q[:, None] - prototypes[None]) ** 2).sum(-1)
    torch.testing.assert_close(logits[0], expected)
    with pytest.raises(ValueError, match="ways"):
        ProtoNet(ways=0)
