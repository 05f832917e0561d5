"""Stochastic hard attention: attend to exactly one key, chosen by sampling.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio, "Show, Attend and
Tell: Neural Image Caption Generation with Visual Attention", ICML 2015,
arXiv:1502.03044, section 4.1.

The scores define a categorical distribution over the keys, ``p = softmax(scores)``;
in training one position ``s ~ p`` is attended (weights one-hot), at eval the most
likely one (argmax). Sampling is not differentiable, so the gradient of the scores
comes from an estimator, picked with ``estimator=``:

- ``"reinforce"`` (the paper): the score-function estimator with a moving-average
  baseline ``b <- decay * b + (1 - decay) * mean(reward)``. ``forward`` records
  ``log p(s)`` (and the entropy of ``p``) in the returned state, accumulated over
  decoder steps; after the decoder has run, add :meth:`HardAttention.reinforce_loss`
  to the task loss.
- ``"gumbel"``: Gumbel-softmax with straight-through (Jang, Gu, Poole 2016,
  arXiv:1611.01144; Maddison, Mnih, Teh 2016, arXiv:1611.00712). The forward value
  is the one-hot of ``argmax(scores + Gumbel noise)``, an exact sample of ``p``;
  the backward pass uses the gradient of ``softmax((scores + noise) / temperature)``.
- ``"straight_through"``: deterministic argmax in the forward pass with the gradient
  of ``softmax(scores / temperature)`` (Bengio, Leonard, Courville 2013,
  arXiv:1308.3432). It does not sample, so training sees the eval-time choice.

Straight-through weights are ``one_hot + (soft - soft.detach())``: the correction
is exactly zero in the forward pass, so the weights are exactly one-hot.

Scores are additive, ``w^T tanh(W q + V k)``, when ``hidden_dim`` is given (the
paper's MLP ``f_att``), else bilinear ``q^T W k``.

Deviations: the paper also replaces the sample by the expected (soft) context with
probability 0.5 and uses the decoder's log-likelihood as the reward; neither is
built in (the reward is whatever the caller passes). The baseline starts at 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import check_choice, check_float, check_int
from attnkit.functional.normalizers import compute_dtype, masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State

__all__ = ["HardAttention"]

ESTIMATORS = ("reinforce", "gumbel", "straight_through")


class HardAttention(Seq2SeqAttention):
    """Attend to one key per query: sampled in training, argmax at eval.

    Args:
        query_dim: ``Dq``.
        key_dim: ``Dk``.
        hidden_dim: ``H`` of the additive score; None uses the bilinear score.
        estimator: ``"reinforce"``, ``"gumbel"`` or ``"straight_through"``.
        temperature: softmax temperature of the surrogate gradient (``gumbel``,
            ``straight_through``); REINFORCE samples from ``softmax(scores)`` itself.
        baseline_decay: decay of the REINFORCE reward baseline, in ``[0, 1)``.

    State: passed through unchanged, except in training with ``"reinforce"``, where
    the returned state adds ``log_prob`` ``(B, T)`` (log-probability of the sampled
    positions) and ``entropy`` ``(B, T)``, with ``T`` the number of query rows seen
    since the state was created (rows are appended on each call). Rows with nothing
    to attend to record 0 for both.

    Example:
        >>> attn = HardAttention(4, 4, estimator="reinforce")
        >>> keys, state = torch.randn(2, 5, 4), {}
        >>> for _ in range(3):
        ...     ctx, w, state = attn(torch.randn(2, 1, 4), keys, state=state)
        >>> loss = attn.reinforce_loss(torch.tensor([1.0, 0.0]), state)
        >>> state["log_prob"].shape
        torch.Size([2, 3])
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None, *,
                 estimator: str = "reinforce", temperature: float = 1.0,
                 baseline_decay: float = 0.9) -> None:
        super().__init__()
        who = "HardAttention"
        for arg, value in (("query_dim", query_dim), ("key_dim", key_dim)):
            check_int(value, arg, minimum=1, owner=who)
        if hidden_dim is not None:
            check_int(hidden_dim, "hidden_dim (None or an int)", minimum=1, owner=who)
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim
        self.estimator = check_choice(estimator, "estimator", ESTIMATORS, owner=who)
        self.temperature = check_float(temperature, "temperature", low=0.0, low_open=True,
                                       owner=who)
        self.baseline_decay = check_float(baseline_decay, "baseline_decay", low=0.0, high=1.0,
                                          high_open=True, owner=who)
        if hidden_dim is None:
            self.bilinear = nn.Linear(key_dim, query_dim, bias=False)  # W of q^T W k
        else:
            self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)  # W
            self.key_proj = nn.Linear(key_dim, hidden_dim)                  # V and b
            self.energy = nn.Linear(hidden_dim, 1, bias=False)              # w
        self.register_buffer("baseline", torch.zeros(()))

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unnormalized scores: ``(B, Lq, Dq)``, ``(B, Lk, Dk)`` -> ``(B, Lq, Lk)``."""
        if self.hidden_dim is None:
            return query @ self.bilinear(keys).transpose(1, 2)
        hidden = torch.tanh(self.query_proj(query)[:, :, None] + self.key_proj(keys)[:, None])
        return self.energy(hidden).squeeze(-1)  # (B, Lq, Lk)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                *, mask: torch.Tensor | None = None, state: State | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Pick one key per query row.

        Args:
            query: ``(B, Lq, Dq)``.
            keys: ``(B, Lk, Dk)``.
            values: ``(B, Lk, Dv)``; defaults to ``keys``.
            mask: ``(B, Lk)`` or ``(B, Lq, Lk)`` bool, True = may attend. Masked keys are
                never picked; a row with no allowed key gets zero weights and context.
            state: ``{}``/None, or the state of a previous call (REINFORCE accumulates
                ``log_prob`` and ``entropy`` in it).

        Returns:
            context ``(B, Lq, Dv)``, weights ``(B, Lq, Lk)`` (one-hot or zero rows), state.
        """
        values, mask = self._check_inputs(query, keys, values, mask, state)
        for arg, t, dim in (("query", query, self.query_dim), ("keys", keys, self.key_dim)):
            if t.shape[-1] != dim:
                raise ValueError(f"HardAttention: {arg} must have last dim {dim}, "
                                 f"got shape {tuple(t.shape)}")
        state = {} if state is None else state
        scores = self.scores(query, keys)  # (B, Lq, Lk)
        B, Lq, Lk = scores.shape
        logits = scores.to(compute_dtype(scores.dtype))
        allowed = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask.expand_as(
            logits)
        nonempty = allowed.any(dim=-1, keepdim=True)  # (B, Lq, 1)
        masked_logits = logits.masked_fill(~allowed, float("-inf"))

        def one_hot(index: torch.Tensor) -> torch.Tensor:  # (B, Lq) -> (B, Lq, Lk)
            # Rows with nothing to attend to (argmax/sample of a dummy row) become zero.
            return F.one_hot(index, Lk).to(logits.dtype) * nonempty

        if not self.training:
            weights = one_hot(masked_logits.argmax(dim=-1))
        elif self.estimator == "straight_through":
            soft = masked_softmax(logits / self.temperature, allowed)
            # soft - soft.detach() is exactly 0 forward, the softmax's gradient backward.
            weights = one_hot(masked_logits.argmax(dim=-1)) + (soft - soft.detach())
        elif self.estimator == "gumbel":
            # -log(E), E ~ Exp(1), is Gumbel(0, 1); the floor keeps the log finite.
            gumbel = -torch.empty_like(logits).exponential_().clamp(min=1e-20).log()
            perturbed = logits + gumbel
            soft = masked_softmax(perturbed / self.temperature, allowed)
            index = perturbed.masked_fill(~allowed, float("-inf")).argmax(dim=-1)
            weights = one_hot(index) + (soft - soft.detach())
        else:
            probs = masked_softmax(logits, allowed).detach()
            # multinomial needs a positive row sum: empty rows draw from a dummy row.
            probs = torch.where(nonempty, probs, torch.ones_like(probs))
            index = torch.multinomial(probs.reshape(B * Lq, Lk), 1).view(B, Lq)
            weights = one_hot(index)
            state = {**state, **_record_sample(masked_logits, allowed, nonempty, index, state)}
        weights = weights.to(scores.dtype)
        context = torch.bmm(weights.to(values.dtype), values)  # (B, Lq, Dv)
        return context, weights, state

    def reinforce_loss(self, reward: torch.Tensor, state: State, *,
                       entropy_weight: float = 0.0) -> torch.Tensor:
        """Surrogate loss whose gradient is the REINFORCE estimate; updates the baseline.

        ``loss = -mean_b sum_t [(reward - baseline) * log_prob + entropy_weight * entropy]``,
        with the baseline value from before this call. Add it to the task loss (whose own
        gradient covers the path through the attended values) and backpropagate once.

        Args:
            reward: ``(B,)`` one reward per sequence, or ``(B, T)`` one per decoder step;
                higher is better (Xu et al. use the log-likelihood of the target).
                Treated as a constant.
            state: the state returned by the last ``forward`` in training mode.
            entropy_weight: weight of the entropy bonus (the paper's ``lambda_e``).

        Returns:
            Scalar loss.
        """
        if not isinstance(state, dict) or "log_prob" not in state:
            raise ValueError("HardAttention: state has no 'log_prob'; pass the state returned "
                             "by forward() in training mode with estimator='reinforce'")
        log_prob, entropy = state["log_prob"], state["entropy"]  # (B, T)
        if not isinstance(reward, torch.Tensor):
            raise TypeError(f"HardAttention: reward must be a tensor, got {type(reward).__name__}")
        if reward.dim() == 1 and reward.shape[0] == log_prob.shape[0]:
            reward = reward[:, None]
        elif tuple(reward.shape) != tuple(log_prob.shape):
            raise ValueError(f"HardAttention: reward must be (B,) = ({log_prob.shape[0]},) or "
                             f"(B, T) = {tuple(log_prob.shape)}, got {tuple(reward.shape)}")
        reward = reward.detach().to(log_prob.dtype)
        advantage = reward - self.baseline.to(log_prob.dtype)
        surrogate = advantage * log_prob + entropy_weight * entropy
        with torch.no_grad():
            decay = self.baseline_decay
            self.baseline.mul_(decay).add_((1 - decay) * reward.mean().to(self.baseline.dtype))
        return -surrogate.sum(dim=1).mean()


def _record_sample(masked_logits: torch.Tensor, allowed: torch.Tensor, nonempty: torch.Tensor,
                   index: torch.Tensor, state: State) -> State:
    """log p(sampled index) and entropy of p per row, ``(B, Lq)`` each, appended to
    the ones already in ``state``."""
    # Empty rows would make log_softmax NaN; give them finite logits and zero them.
    log_p = torch.log_softmax(masked_logits.masked_fill(~nonempty, 0.0), dim=-1)
    log_prob = log_p.gather(-1, index[..., None]).squeeze(-1) * nonempty.squeeze(-1)
    # masked_fill (not where) so that 0 * -inf never enters the backward pass.
    safe_log_p = log_p.masked_fill(~allowed, 0.0)
    entropy = -(safe_log_p.exp() * safe_log_p).masked_fill(~allowed, 0.0).sum(-1)
    if "log_prob" in state:
        log_prob = torch.cat([state["log_prob"], log_prob], dim=1)
        entropy = torch.cat([state["entropy"], entropy], dim=1)
    return {"log_prob": log_prob, "entropy": entropy}
