"""Show, Attend and Tell: a CNN feature map read by an LSTM decoder with visual attention.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel & Bengio 2015, "Show, Attend and
Tell: Neural Image Caption Generation with Visual Attention", arXiv:1502.03044.

* Encoder: a CNN whose last feature map ``(C, h, w)`` gives ``L = h * w`` annotation
  vectors ``a_i`` (the paper: VGG conv5_4, 14 x 14 x 512). As in the paper it is trained
  apart from the captioner (here as a classifier of single items, :meth:`CanvasEncoder.classify`)
  and then frozen; it is fully convolutional, so it reads canvases of any size.
* Decoder: an LSTM. Step ``t`` scores the annotations with the previous hidden state
  ``h_{t-1}`` (MLP attention ``f_att``), forms the context ``z_t`` from the weights
  ``alpha_t``, gates it with ``beta_t = sigmoid(f_beta(h_{t-1}))`` (the paper's section
  4.2.1), feeds ``[E y_{t-1}; z_t]`` to the LSTM and predicts with the deep output layer
  ``p(y_t) = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t))``. ``h_0``, ``c_0`` come from MLPs
  of the mean annotation.
* Attention: ``"soft"`` (deterministic, :class:`attnkit.nn.seq2seq.AdditiveAttention`, the
  paper's section 4.2) or ``"hard"`` (stochastic, :class:`attnkit.nn.seq2seq.HardAttention`
  with REINFORCE, section 4.1): one location sampled from ``alpha_t`` in training, the most
  likely one at evaluation.
* Losses (:func:`caption_loss`): cross-entropy of the caption; for soft attention the
  doubly stochastic regularizer ``lambda * sum_i (1 - sum_t alpha_ti)^2`` (eq. 14); for hard
  attention the REINFORCE term with a moving-average baseline and the entropy bonus
  ``lambda_e * H[alpha]``, with the reward ``log p(y | a)`` of the whole caption (eq. 12).

Deviations: a small CNN trained on Fashion-MNIST items instead of VGG on ImageNet;
optionally (``num_locations``) a learned position vector is added to each annotation vector,
since a translation-equivariant CNN's features alone do not say where a location is and a
caption in reading order needs that (the paper's VGG features carry only what padding
leaks); the
hard variant does not replace the sample by the expected context half of the time (the
paper's variance trick), and its eval picks the argmax location instead of sampling; the
regularizer's sum over ``t`` covers the real (non-pad) steps of each caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import check_choice, check_float, check_int
from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.nn.seq2seq.hard import HardAttention

__all__ = ["ATTENTION_KINDS", "CanvasEncoder", "ShowAttendTell", "ShowAttendTellConfig",
           "caption_loss"]

ATTENTION_KINDS = ("soft", "hard")


class CanvasEncoder(nn.Module):
    """Four 3 x 3 conv layers (ReLU, BatchNorm), 2 x 2 max-pooling after the first three:
    ``(B, 1, H, W) -> (B, C, H // 8, W // 8)`` (floor at each pooling). A 28 x 28 item gives
    a 3 x 3 map; :meth:`classify` averages it for the pre-training head.

    Args:
        widths: output channels of the four conv layers (``C = widths[-1]``).
        num_classes: outputs of the classification head used to pre-train the encoder.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64), num_classes: int = 10) -> None:
        super().__init__()
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                   for w in widths):
            raise ValueError(f"widths must be four positive ints, got {widths!r}")
        layers, inputs = [], 1
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(inputs, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if index < 3:
                layers.append(nn.MaxPool2d(2))
            inputs = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)
        self.channels = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 1, H, W)`` in [0, 1] -> feature map ``(B, C, H // 8, W // 8)``."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B, 1, H, W), got {tuple(images.shape)}")
        return self.body(images)

    def classify(self, items: torch.Tensor) -> torch.Tensor:
        """``items (B, 1, 28, 28)`` -> class logits ``(B, num_classes)`` (mean-pooled map)."""
        return self.head(self(items).mean(dim=(2, 3)))


@dataclass
class ShowAttendTellConfig:
    """Sizes and the attention kind of a :class:`ShowAttendTell` decoder."""

    vocab_size: int               # caption tokens, specials included
    feature_dim: int = 64         # D of an annotation vector (the encoder's channels)
    embed_dim: int = 32           # word embedding (and deep-output) width m
    hidden_dim: int = 128         # LSTM state n
    attention_dim: int = 64       # hidden width of the attention MLP f_att
    attention: str = "soft"       # "soft" (deterministic) or "hard" (stochastic, REINFORCE)
    dropout: float = 0.0          # before the deep output layer
    num_locations: int = 0        # L for a learned position vector per location (0: none)
    bos: int = 1                  # token that starts every caption
    eos: int = 2                  # token that ends it

    def __post_init__(self) -> None:
        who = "ShowAttendTellConfig"
        for field in ("vocab_size", "feature_dim", "embed_dim", "hidden_dim", "attention_dim"):
            check_int(getattr(self, field), field, minimum=1, owner=who)
        check_choice(self.attention, "attention", ATTENTION_KINDS, owner=who)
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True,
                                   owner=who)
        check_int(self.num_locations, "num_locations", minimum=0, owner=who)
        for field in ("bos", "eos"):
            check_int(getattr(self, field), field, minimum=0, maximum=self.vocab_size - 1,
                      owner=who)


class ShowAttendTell(nn.Module):
    """The attention LSTM decoder over annotation vectors ``features (B, L, D)``.

    ``features`` come from :meth:`annotations` (a :class:`CanvasEncoder` map flattened
    row-major: location ``i = r * w + c``). The attention module is ``self.attention``, so
    :func:`attnkit.interp.capture` names it ``"attention"`` and records one row per step.

    Example:
        >>> model = ShowAttendTell(ShowAttendTellConfig(vocab_size=13))
        >>> logits, alphas, _ = model(torch.randn(2, 64, 64), torch.ones(2, 4, dtype=torch.long))
        >>> logits.shape, alphas.shape
        (torch.Size([2, 4, 13]), torch.Size([2, 4, 64]))
    """

    def __init__(self, config: ShowAttendTellConfig) -> None:
        super().__init__()
        if not isinstance(config, ShowAttendTellConfig):
            raise TypeError(f"config must be a ShowAttendTellConfig, got "
                            f"{type(config).__name__}")
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.init_h = nn.Linear(c.feature_dim, c.hidden_dim)
        self.init_c = nn.Linear(c.feature_dim, c.hidden_dim)
        if c.attention == "soft":
            self.attention = AdditiveAttention(c.hidden_dim, c.feature_dim, c.attention_dim,
                                               bias=True)
        else:
            self.attention = HardAttention(c.hidden_dim, c.feature_dim, c.attention_dim,
                                           estimator="reinforce")
        self.gate = nn.Linear(c.hidden_dim, 1)  # f_beta
        self.lstm = nn.LSTMCell(c.embed_dim + c.feature_dim, c.hidden_dim)
        self.out_hidden = nn.Linear(c.hidden_dim, c.embed_dim)  # L_h
        self.out_context = nn.Linear(c.feature_dim, c.embed_dim)  # L_z
        self.out_vocab = nn.Linear(c.embed_dim, c.vocab_size)  # L_o
        self.dropout = nn.Dropout(c.dropout)
        self.position = nn.Parameter(torch.randn(c.num_locations, c.feature_dim) * 0.1) \
            if c.num_locations else None  # (L, D)

    @staticmethod
    def annotations(feature_map: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w) -> (B, h * w, D)``, location ``r * w + c``."""
        return feature_map.flatten(2).transpose(1, 2)

    def _check_features(self, features: torch.Tensor) -> None:
        d = self.config.feature_dim
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a tensor (B, L, {d}), got "
                            f"{type(features).__name__}")
        if features.dim() != 3 or features.shape[-1] != d or features.shape[1] == 0:
            raise ValueError(f"features must be (B, L >= 1, {d}), got {tuple(features.shape)}")
        locations = self.config.num_locations
        if locations and features.shape[1] != locations:
            raise ValueError(f"features must have L = num_locations = {locations} locations, "
                             f"got {tuple(features.shape)}")

    def _place(self, features: torch.Tensor) -> torch.Tensor:
        """Add the learned position vectors (if any): ``(B, L, D) -> (B, L, D)``."""
        return features if self.position is None else features + self.position
    def _begin(self, features: torch.Tensor):
        mean = features.mean(dim=1)  # (B, D)
        state = self.attention.init_state(features)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), state

    def _step(self, features, previous, h, c, state):
        """One decoder step: ``previous (B,)`` tokens -> logits ``(B, V)``, ``alpha (B, L)``."""
        context, alpha, state = self.attention(h[:, None], features, state=state)
        context = torch.sigmoid(self.gate(h)) * context[:, 0]  # (B, D), gated z_t
        word = self.embed(previous)  # (B, m)
        h, c = self.lstm(torch.cat([word, context], dim=-1), (h, c))
        deep = word + self.out_hidden(h) + self.out_context(context)  # (B, m)
        return self.out_vocab(self.dropout(deep)), alpha[:, 0], h, c, state

    def forward(self, features: torch.Tensor, tokens: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Teacher forcing: step ``t`` reads ``tokens[:, t]`` and predicts ``tokens[:, t + 1]``.

        Args:
            features: ``(B, L, D)`` annotation vectors.
            tokens: ``(B, T)`` int64 decoder inputs (``<bos> y_1 ... y_{T-1}``).

        Returns:
            ``logits (B, T, V)``, ``alphas (B, T, L)`` (soft weights, or one-hot locations
            for hard attention), and the attention state (for hard attention in training it
            holds ``log_prob``/``entropy`` ``(B, T)`` for :func:`caption_loss`).
        """
        self._check_features(features)
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or \
                tokens.dtype != torch.long or tokens.shape[0] != features.shape[0]:
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens)
            raise ValueError(f"tokens must be int64 (B, T) with B = {features.shape[0]}, got "
                             f"{got}")
        features = self._place(features)
        h, c, state = self._begin(features)
        logits, alphas = [], []
        for t in range(tokens.shape[1]):
            step_logits, alpha, h, c, state = self._step(features, tokens[:, t], h, c, state)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1), state

    @torch.no_grad()
    def generate(self, features: torch.Tensor, max_len: int,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding from ``<bos>``.

        Args:
            features: ``(B, L, D)``.
            max_len: the most tokens to emit (``<eos>`` included).

        Returns:
            ``tokens (B, max_len)`` (after a row's ``<eos>``, more ``<eos>``) and
            ``alphas (B, max_len, L)``, the attention of the step that emitted each token.
        """
        self._check_features(features)
        check_int(max_len, "max_len", minimum=1)
        features = self._place(features)
        h, c, state = self._begin(features)
        previous = torch.full((features.shape[0],), self.config.bos, dtype=torch.long,
                              device=features.device)
        done = torch.zeros_like(previous, dtype=torch.bool)
        tokens, alphas = [], []
        for _ in range(max_len):
            logits, alpha, h, c, state = self._step(features, previous, h, c, state)
            previous = torch.where(done, self.config.eos, logits.argmax(-1))
            done |= previous == self.config.eos
            tokens.append(previous)
            alphas.append(alpha)
        return torch.stack(tokens, 1), torch.stack(alphas, 1)


def caption_loss(model: ShowAttendTell, features: torch.Tensor, captions: torch.Tensor, *,
                 pad: int = 0, doubly_stochastic: float = 0.0,
                 entropy_weight: float = 0.0, reward: str = "sequence",
                 ) -> dict[str, torch.Tensor]:
    """The training loss of :class:`ShowAttendTell` on a batch.

    Args:
        model: the decoder (in training mode for the REINFORCE term of hard attention).
        features: ``(B, L, D)``.
        captions: ``(B, T + 1)`` int64 ``<bos> y_1 ... <eos> <pad>...``.
        pad: the padding token (ignored by the loss).
        doubly_stochastic: ``lambda`` of ``sum_i (1 - sum_t alpha_ti)^2`` (soft attention;
            mean over the batch).
        entropy_weight: ``lambda_e`` of the entropy bonus (hard attention).
        reward: REINFORCE reward of hard attention: ``"sequence"`` (the paper: the
            caption's log-likelihood, credited to every step's location) or ``"step"``
            (each step's location gets only its own word's log-likelihood: less variance,
            but blind to a location's effect on later words).

    Returns:
        ``{"loss": total, "nll": mean token cross-entropy, "attention": regularizer or
        REINFORCE term}`` (scalars; only ``loss`` carries the gradient that matters).
    """
    inputs, targets = captions[:, :-1], captions[:, 1:]  # (B, T)
    logits, alphas, state = model(features, inputs)  # (B, T, V), (B, T, L)
    real = targets != pad  # (B, T)
    token_nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
    token_nll = token_nll * real
    nll = token_nll.sum() / real.sum().clamp_min(1)
    if model.config.attention == "soft":
        coverage = (alphas * real[..., None]).sum(dim=1)  # (B, L): sum_t alpha_ti
        extra = doubly_stochastic * ((1 - coverage) ** 2).sum(dim=1).mean()
    elif model.training:
        check_choice(reward, "reward", ("sequence", "step"))
        gain = -token_nll.detach()  # (B, T) log p(y_t | ...), higher is better
        gain = gain.sum(dim=1) if reward == "sequence" else gain  # (B,) or (B, T)
        state = {"log_prob": state["log_prob"] * real, "entropy": state["entropy"] * real}
        extra = model.attention.reinforce_loss(gain, state, entropy_weight=entropy_weight)
    else:
        extra = torch.zeros((), device=nll.device)
    return {"loss": nll + extra, "nll": nll.detach(), "attention": extra.detach()}
