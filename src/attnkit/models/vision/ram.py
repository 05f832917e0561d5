"""RAM, the Recurrent Attention Model: classify an image from a few small glimpses.

Mnih, Heess, Graves & Kavukcuoglu, "Recurrent Models of Visual Attention", 2014,
arXiv:1406.6247. At each of ``T`` steps, for a location ``l`` in ``[-1, 1]^2`` (x, y):

    rho(x, l)   = ``scales`` square patches centred at l, sides g, 2g, 4g, ... pixels, each
                  average-pooled down to g x g (the "retina"; zero outside the image)
    g_t         = relu(W_g relu(W_p rho) + W_l relu(W_q l))                 glimpse network
    h_t         = relu(W_h h_{t-1} + W_x g_t)                               core (rectifier)
    l_{t+1}     ~ N(tanh(W_loc h_t), sigma^2)  (clamped to [-1, 1])         location network
    b_t         = W_b h_t                                                   baseline

and the class comes from ``W_a h_T``. Training (the paper's classification recipe): the
cross-entropy of the class trains the action, core and glimpse networks by
backpropagation; the location network is trained by REINFORCE with reward ``R = 1`` for a
correct class (0 otherwise), ``-sum_t log pi(l_t) (R - b_t)``, and the baseline by the
squared error ``(R - b_t)^2`` (the variance reduction of the paper's eq. 2). The core sees
no gradient from REINFORCE (``h_t`` is detached into the location and baseline nets).

Deviations: the first location is produced by the location network from ``h_0 = 0`` (a
learned start with exploration noise) rather than drawn at random; patches are sampled
bilinearly (``grid_sample``), so a location need not be a whole pixel. At evaluation
(``model.eval()``), locations are the means (no sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RAMConfig", "RAM", "RAMOutput", "glimpse_patches", "ram_loss"]


@dataclass
class RAMConfig:
    """Sizes of a :class:`RAM` (defaults: the paper's cluttered-MNIST model, 8 glimpses)."""

    num_classes: int = 10  # classes
    glimpses: int = 8  # T, glimpses before the decision
    patch: int = 12  # g, the retina's finest patch side in pixels
    scales: int = 3  # patches of sides g, 2g, 4g, ... each pooled to g x g
    glimpse_hidden: int = 128  # width of the "what" (patch) and "where" (location) layers
    hidden: int = 256  # glimpse vector g_t and core state h_t
    std: float = 0.15  # sigma of the location policy, in [-1, 1] units


@dataclass
class RAMOutput:
    """What a :class:`RAM` forward gives.

    Attributes:
        logits: ``(B, num_classes)`` from the last state.
        log_probs: ``(B, T)`` log-density of each sampled location (zeros in eval mode).
        baselines: ``(B, T)`` predicted reward before each glimpse.
        locations: ``(B, T, 2)`` glimpse centres (x, y) in ``[-1, 1]``.
    """

    logits: torch.Tensor
    log_probs: torch.Tensor
    baselines: torch.Tensor
    locations: torch.Tensor


def glimpse_patches(images: torch.Tensor, locations: torch.Tensor, patch: int,
                    scales: int) -> torch.Tensor:
    """The retina: ``images (B, C, S, S)``, ``locations (B, 2)`` (x, y in ``[-1, 1]``) ->
    ``(B, scales * C, patch, patch)``; scale ``k`` covers ``patch * 2**k`` pixels, average-
    pooled by ``2**k``; outside the image is zero."""
    batch, _, height, width = images.shape
    out = []
    for k in range(scales):
        side = patch * 2 ** k
        steps = (torch.arange(side, dtype=images.dtype, device=images.device) + 0.5) / side
        offsets = (steps * 2 - 1)  # (side,) in (-1, 1): pixel centres of the patch
        dx = offsets * side / width  # normalized units of the image
        dy = offsets * side / height
        grid_x = locations[:, 0, None, None] + dx[None, None, :]  # (B, 1, side)
        grid_y = locations[:, 1, None, None] + dy[None, :, None]  # (B, side, 1)
        grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)  # (B, side, side, 2)
        sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B, C, side, side)
        out.append(F.avg_pool2d(sampled, 2 ** k) if k else sampled)
    return torch.cat(out, dim=1)  # (B, scales * C, patch, patch)


class RAM(nn.Module):
    """The recurrent attention model (see the module docstring).

    Args:
        config: :class:`RAMConfig`.
        in_channels: image channels.

    Example:
        >>> out = RAM(RAMConfig(glimpses=2))(torch.zeros(3, 1, 28, 28))
        >>> out.logits.shape, out.locations.shape
        (torch.Size([3, 10]), torch.Size([3, 2, 2]))
    """

    def __init__(self, config: RAMConfig | None = None, *, in_channels: int = 1) -> None:
        super().__init__()
        self.config = config = config or RAMConfig()
        retina = config.scales * in_channels * config.patch ** 2
        self.what = nn.Linear(retina, config.glimpse_hidden)
        self.where = nn.Linear(2, config.glimpse_hidden)
        self.what_out = nn.Linear(config.glimpse_hidden, config.hidden)
        self.where_out = nn.Linear(config.glimpse_hidden, config.hidden)
        self.core_h = nn.Linear(config.hidden, config.hidden)
        self.core_g = nn.Linear(config.hidden, config.hidden)
        self.locate = nn.Linear(config.hidden, 2)
        self.baseline = nn.Linear(config.hidden, 1)
        self.classify = nn.Linear(config.hidden, config.num_classes)

    def glimpse(self, images: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """Glimpse network: ``(B, C, S, S), (B, 2) -> g_t (B, hidden)``."""
        patches = glimpse_patches(images, location, self.config.patch, self.config.scales)
        what = torch.relu(self.what(patches.flatten(1)))  # (B, glimpse_hidden)
        where = torch.relu(self.where(location))  # (B, glimpse_hidden)
        return torch.relu(self.what_out(what) + self.where_out(where))  # (B, hidden)

    def forward(self, images: torch.Tensor) -> RAMOutput:
        """``images (B, C, S, S)`` -> :class:`RAMOutput`."""
        batch = images.shape[0]
        state = images.new_zeros(batch, self.config.hidden)  # h_0
        log_probs, baselines, locations = [], [], []
        for _ in range(self.config.glimpses):
            mean = torch.tanh(self.locate(state.detach()))  # (B, 2)
            baselines.append(self.baseline(state.detach()).squeeze(1))  # (B,)
            if self.training:
                policy = torch.distributions.Normal(mean, self.config.std)
                sample = policy.sample().clamp(-1.0, 1.0)
                log_probs.append(policy.log_prob(sample).sum(dim=1))  # (B,)
            else:
                sample = mean
                log_probs.append(mean.new_zeros(batch))
            locations.append(sample)
            state = torch.relu(self.core_h(state) + self.core_g(self.glimpse(images, sample)))
        return RAMOutput(self.classify(state), torch.stack(log_probs, 1),
                         torch.stack(baselines, 1), torch.stack(locations, 1))


def ram_loss(output: RAMOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The hybrid loss: cross-entropy + REINFORCE (reward 1 if correct) + baseline MSE.

    Args:
        output: of a training-mode forward.
        labels: ``(B,)`` int64.

    Returns:
        the scalar loss and its parts (``ce``, ``reinforce``, ``baseline``, ``reward``) as
        floats.
    """
    ce = F.cross_entropy(output.logits, labels)
    reward = (output.logits.argmax(dim=1) == labels).to(output.logits.dtype)  # (B,)
    advantage = (reward[:, None] - output.baselines).detach()  # (B, T)
    reinforce = -(output.log_probs * advantage).sum(dim=1).mean()
    baseline = F.mse_loss(output.baselines, reward[:, None].expand_as(output.baselines))
    loss = ce + reinforce + baseline
    parts = {"ce": ce, "reinforce": reinforce, "baseline": baseline, "reward": reward.mean()}
    return loss, {name: float(value.detach()) for name, value in parts.items()}
