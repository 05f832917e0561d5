"""Vision models: the CNN and its SE/CBAM variants, RAM's retina and losses, soft spatial
attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.models.vision import (
    CNN,
    RAM,
    RAMConfig,
    SoftSpatialClassifier,
    cbam_gate,
    glimpse_patches,
    ram_loss,
    se_gate,
)
from attnkit.nn.vision import CBAM, SqueezeExcitation


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("side", [28, 60])
def test_cnn_variants_shapes_and_gates(side):
    torch.manual_seed(0)
    plain = CNN(10, (8, 16, 32))
    se = CNN(10, (8, 16, 32), gate=se_gate(4))
    cbam = CNN(10, (8, 16, 32), gate=cbam_gate(4))
    x = torch.randn(3, 1, side, side)
    for model in (plain, se, cbam):
        assert model(x).shape == (3, 10)
    assert sum(isinstance(m, SqueezeExcitation) for m in se.modules()) == 3
    assert sum(isinstance(m, CBAM) for m in cbam.modules()) == 3
    assert not any(isinstance(m, (SqueezeExcitation, CBAM)) for m in plain.modules())
    assert _params(plain) < _params(se) < _params(cbam)


def test_cnn_refuses_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        CNN(10, ())
    with pytest.raises(ValueError, match="widths"):
        CNN(10, (8, 0))


def test_retina_crops_and_pools_the_right_pixels():
    image = torch.arange(60 * 60, dtype=torch.float32).view(1, 1, 60, 60)
    centre = torch.zeros(1, 2)  # (x, y) = image centre
    patches = glimpse_patches(image, centre, patch=12, scales=3)
    assert patches.shape == (1, 3, 12, 12)
    torch.testing.assert_close(patches[0, 0], image[0, 0, 24:36, 24:36])
    torch.testing.assert_close(patches[0, 1], F.avg_pool2d(image[:, :, 18:42, 18:42], 2)[0, 0])
    torch.testing.assert_close(patches[0, 2], F.avg_pool2d(image[:, :, 6:54, 6:54], 4)[0, 0])
    # x is the column: moving right by 10 pixels (1/3 of the half-width) shifts columns only
    moved = glimpse_patches(image, torch.tensor([[10 / 30, 0.0]]), patch=12, scales=1)
    torch.testing.assert_close(moved[0, 0], image[0, 0, 24:36, 34:46])
    # outside the image is zero
    corner = glimpse_patches(torch.ones(1, 1, 60, 60), torch.tensor([[1.0, 1.0]]), 12, 1)
    assert corner[0, 0, :6, :6].min() == 1 and corner[0, 0, 6:, 6:].max() == 0


def test_ram_shapes_modes_and_policy_gradient_path():
    torch.manual_seed(0)
    model = RAM(RAMConfig(glimpses=4, hidden=32, glimpse_hidden=16))
    images = torch.rand(5, 1, 60, 60)
    labels = torch.randint(0, 10, (5,))
    out = model(images)
    assert out.logits.shape == (5, 10) and out.locations.shape == (5, 4, 2)
    assert out.log_probs.shape == (5, 4) and out.baselines.shape == (5, 4)
    assert out.locations.abs().max() <= 1 and torch.isfinite(out.log_probs).all()
    # REINFORCE alone reaches only the location network, never the core or classifier
    (-(out.log_probs * 1.0).sum()).backward()
    assert model.locate.weight.grad is not None and model.locate.weight.grad.abs().sum() > 0
    assert model.core_h.weight.grad is None and model.classify.weight.grad is None
    model.zero_grad()
    loss, parts = ram_loss(model(images), labels)
    loss.backward()
    assert set(parts) == {"ce", "reinforce", "baseline", "reward"}
    assert model.classify.weight.grad.abs().sum() > 0 and model.baseline.weight.grad is not None
    model.eval()
    first, second = model(images), model(images)
    torch.testing.assert_close(first.locations, second.locations)
    assert (first.log_probs == 0).all()


def _bars(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 canvases, blank but for a 4x4 item centred at (-0.5, -0.5): a vertical bar
    (class 0) or a horizontal bar (class 1)."""
    images = torch.zeros(count, 1, 16, 16)
    labels = torch.randint(0, 2, (count,), generator=generator)
    images[labels == 0, 0, 2:6, 3:5] = 1
    images[labels == 1, 0, 3:5, 2:6] = 1
    return images, labels


@pytest.mark.parametrize("seed", [0, 3])
def test_ram_reinforce_learns_where_to_look(seed):
    # One 4x4 glimpse per image, no coarse scale: the class is visible only from a glimpse
    # on the item, of which the start location (near the centre) shows at most a sliver.
    # Only REINFORCE moves the location (the location net reads a detached state), so
    # reaching the item shows the policy gradient working end to end.
    torch.manual_seed(seed)
    model = RAM(RAMConfig(num_classes=2, glimpses=1, patch=4, scales=1, glimpse_hidden=16,
                          hidden=32, std=0.3))
    generator = torch.Generator().manual_seed(seed)
    test_images, test_labels = _bars(256, generator)
    target = torch.tensor([-0.5, -0.5])
    model.eval()
    start = model(test_images[:1]).locations[0, 0]
    assert (start - target).norm() > 0.45
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        images, labels = _bars(64, generator)
        loss, _ = ram_loss(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    out = model(test_images)
    assert (out.locations[0, 0] - target).norm() < 0.15
    assert (out.logits.argmax(1) == test_labels).float().mean() > 0.95


def test_soft_spatial_weights_are_a_distribution_over_positions():
    torch.manual_seed(0)
    model = SoftSpatialClassifier(10, (8, 16, 32), image_size=60, heads=2, key_dim=8).eval()
    images = torch.rand(3, 1, 60, 60)
    pooled, weights = model.attend(images)
    assert weights.shape == (3, 2, 7, 7) and pooled.shape == (3, 2 * 32)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(3, 2))
    # the pooled vector is the weighted mean of the trunk's features
    features = model.trunk(images)  # (3, 32, 7, 7)
    manual = torch.einsum("bhyx,bcyx->bhc", weights, features).reshape(3, 64)
    torch.testing.assert_close(pooled, manual, rtol=1e-5, atol=1e-6)
    assert model(images).shape == (3, 10)
    with pytest.raises(ValueError, match="image_size"):
        SoftSpatialClassifier(10, (8, 8, 8), image_size=4)
