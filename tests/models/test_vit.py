"""The small Vision Transformer: shapes, captured attention, rollout maps, training."""

import pytest
import torch

from attnkit.interp.capture import capture
from attnkit.interp.rollout import class_token_rollout
from attnkit.models.vision.vit import VisionTransformer, ViTConfig


def _model(**sizes):
    torch.manual_seed(0)
    config = ViTConfig(**{"d_model": 16, "num_layers": 2, "num_heads": 2, "ffn_dim": 32,
                          **sizes})
    return VisionTransformer(config).eval()


def test_shapes_and_tokens():
    model = _model(patch_size=7)
    images = torch.randn(3, 1, 28, 28)
    assert model.config.num_tokens == 17
    assert model.tokens(images).shape == (3, 17, 16)
    assert model(images).shape == (3, 10)


def test_capture_records_every_layer_and_rows_sum_to_one():
    model = _model()
    images = torch.randn(2, 1, 28, 28)
    with capture(model) as cap:
        logits = model(images)
    assert cap.names == ["blocks.0.self_attn", "blocks.1.self_attn"]
    weights = cap.weights("blocks.1.self_attn")
    assert weights.shape == (2, 2, 50, 50)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 50))
    torch.testing.assert_close(model(images), logits)  # capturing changes nothing


def test_rollout_map_is_a_distribution_over_patches():
    model = _model()
    images = torch.randn(2, 1, 28, 28)
    logits, maps = class_token_rollout(model, images, grid=7)
    assert maps.shape == (2, 7, 7)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum((1, 2)), torch.ones(2))
    torch.testing.assert_close(logits, model(images))


def test_patch_order_is_row_major():
    # a model whose patch embedding sums the pixels: only the patch that holds the bright
    # pixel gets a nonzero token before the position embeddings
    model = _model(patch_size=7)
    with torch.no_grad():
        model.patch_embed.weight.fill_(1.0)
        model.patch_embed.bias.zero_()
        model.pos_embed.zero_()
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 8, 22] = 1.0  # patch row 1, column 3 -> token 1 + 1 * 4 + 3 = 8
    patches = model.patch_embed(image).flatten(2).transpose(1, 2)[0]  # (16, E)
    assert patches.abs().sum(-1).nonzero().flatten().tolist() == [1 * 4 + 3]


def test_learns_a_toy_task():
    # bright top half vs bright bottom half: a few Adam steps separate them
    torch.manual_seed(1)
    model = _model(patch_size=7).train()
    images = torch.rand(64, 1, 28, 28) * 0.1
    labels = torch.randint(0, 2, (64,))
    images[labels == 0, :, :14] += 1.0
    images[labels == 1, :, 14:] += 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(images).argmax(-1) == labels).float().mean() > 0.95


@pytest.mark.parametrize("sizes, match", [
    ({"patch_size": 5}, "patch_size"),
    ({"num_heads": 3}, "num_heads"),
    ({"d_model": 0}, "d_model"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config(sizes, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**sizes)


def test_bad_images():
    model = _model()
    with pytest.raises(ValueError, match="images"):
        model(torch.randn(2, 28, 28))
    with pytest.raises(TypeError, match="images"):
        model(torch.randn(2, 1, 28, 28, dtype=torch.float64))
    with pytest.raises(TypeError, match="config"):
        VisionTransformer({"d_model": 8})
