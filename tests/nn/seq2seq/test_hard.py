"""HardAttention: argmax at eval, sampling follows the softmax, masks, the three
estimators' gradients, the REINFORCE loss and baseline, a tiny bandit."""

from __future__ import annotations

import pytest
import torch

from attnkit.functional.normalizers import masked_softmax
from attnkit.nn.seq2seq.hard import HardAttention

ESTIMATORS = ["reinforce", "gumbel", "straight_through"]


def _bandit(estimator: str = "reinforce", lk: int = 4) -> tuple[HardAttention, torch.Tensor]:
    """Bilinear scores with one-hot keys: score_j = W[0, j], one free logit per position."""
    attn = HardAttention(1, lk, estimator=estimator)
    return attn, torch.eye(lk)[None]  # keys (1, Lk, Lk)


def test_eval_is_argmax_hand_computed():
    attn = HardAttention(2, 2).eval()
    with torch.no_grad():
        attn.bilinear.weight.copy_(torch.eye(2))
    q = torch.tensor([[[1.0, 0.0]]])
    keys = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]]])  # scores 0, 2, 1
    values = torch.tensor([[[10.0], [20.0], [30.0]]])
    ctx, w, state = attn(q, keys, values)
    assert torch.equal(w, torch.tensor([[[0.0, 1.0, 0.0]]]))
    assert torch.equal(ctx, torch.tensor([[[20.0]]]))
    assert state == {}
    # Masking the best key moves the choice to the next best one.
    ctx, w, _ = attn(q, keys, values, mask=torch.tensor([[True, False, True]]))
    assert torch.equal(w, torch.tensor([[[0.0, 0.0, 1.0]]])) and ctx.item() == 30.0


def test_additive_scores_hand_computed():
    attn = HardAttention(3, 2, 4).double()
    q, k = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 6, 2, dtype=torch.float64)
    wq, wk, bk = attn.query_proj.weight, attn.key_proj.weight, attn.key_proj.bias
    expected = torch.einsum("h,bijh->bij", attn.energy.weight[0],
                            torch.tanh((q @ wq.T)[:, :, None] + (k @ wk.T + bk)[:, None]))
    torch.testing.assert_close(attn.scores(q, k), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_training_samples_follow_the_softmax(estimator):
    attn, keys = _bandit(estimator, lk=5)
    with torch.no_grad():
        attn.bilinear.weight.copy_(torch.tensor([[0.5, -1.0, 1.5, 0.0, 0.7]]))
    mask = torch.tensor([[True, True, True, False, True]])
    n = 20000
    _, w, _ = attn(torch.ones(1, n, 1), keys, mask=mask)
    freq = w.detach()[0].mean(0)
    probs = masked_softmax(attn.scores(torch.ones(1, 1, 1), keys), mask[:, None])[0, 0].detach()
    assert freq[3] == 0  # the masked key is never drawn
    # Binomial std is at most 0.5 / sqrt(n) = 0.0035; 0.015 is > 4 sigma.
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.015)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_weights_are_exactly_one_hot_and_respect_masks(estimator):
    attn = HardAttention(4, 6, 5, estimator=estimator)
    mask = torch.rand(8, 16, 7) > 0.5
    mask[:, :, 3] = True
    ctx, w, _ = attn(torch.randn(8, 16, 4), torch.randn(8, 7, 6), mask=mask)
    assert ((w == 0) | (w == 1)).all()
    assert torch.equal(w.sum(-1), torch.ones(8, 16))
    assert (w.masked_select(~mask) == 0).all()


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("training", [True, False])
def test_fully_masked_row_gives_zeros_and_finite_grads(estimator, training):
    attn = HardAttention(4, 6, 5, estimator=estimator).train(training)
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 6, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 0] = False
    ctx, w, state = attn(q, k, mask=mask)
    assert (w[1, 0] == 0).all() and (ctx[1, 0] == 0).all()
    assert torch.equal(w[0].sum(-1), torch.ones(3))
    loss = ctx.square().sum() + w.sum()
    if training and estimator == "reinforce":
        assert state["log_prob"][1, 0] == 0 and state["entropy"][1, 0] == 0
        loss = loss + attn.reinforce_loss(torch.tensor([1.0, 2.0]), state, entropy_weight=0.1)
    loss.backward()
    assert k.grad is not None and torch.isfinite(k.grad).all()  # keys are also the values
    score_grads = [q.grad, *(p.grad for p in attn.parameters())]
    if training:
        assert all(g is not None and torch.isfinite(g).all() for g in score_grads)
    else:  # argmax at eval: nothing flows back to the scores
        assert all(g is None for g in score_grads)


@pytest.mark.parametrize("estimator", ["gumbel", "straight_through"])
def test_straight_through_forward_is_one_hot_with_nonzero_gradients(estimator):
    attn = HardAttention(4, 6, estimator=estimator, temperature=0.5)
    q = torch.randn(3, 2, 4, requires_grad=True)
    k, v = torch.randn(3, 5, 6), torch.randn(3, 5, 3)
    ctx, w, _ = attn(q, k, v)
    index = w.detach().argmax(-1)
    assert torch.equal(w.detach(), torch.nn.functional.one_hot(index, 5).float())
    torch.testing.assert_close(ctx, torch.bmm(w.detach(), v), rtol=0, atol=0)
    ctx.sum().backward()
    assert q.grad.abs().sum() > 0 and attn.bilinear.weight.grad.abs().sum() > 0
    assert torch.isfinite(q.grad).all() and torch.isfinite(attn.bilinear.weight.grad).all()


def test_straight_through_forward_equals_eval_argmax():
    attn = HardAttention(4, 6, 5, estimator="straight_through")
    q, k = torch.randn(3, 4, 4), torch.randn(3, 7, 6)
    _, w_train, _ = attn(q, k)
    _, w_eval, _ = attn.eval()(q, k)
    assert torch.equal(w_train.detach(), w_eval)


def test_straight_through_gradient_is_the_softmax_gradient():
    attn = HardAttention(2, 3, estimator="straight_through", temperature=2.0).double()
    q = torch.randn(1, 1, 2, dtype=torch.float64, requires_grad=True)
    k, v = torch.randn(1, 3, 3, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    ctx, _, _ = attn(q, k, v)
    (grad_st,) = torch.autograd.grad(ctx.sum(), q)
    soft_ctx = torch.bmm(torch.softmax(attn.scores(q, k) / 2.0, -1), v)
    (grad_soft,) = torch.autograd.grad(soft_ctx.sum(), q)
    torch.testing.assert_close(grad_st, grad_soft, rtol=0, atol=1e-14)


def test_reinforce_records_log_prob_of_the_sample_and_accumulates():
    attn = HardAttention(4, 6, 5, estimator="reinforce")
    k = torch.randn(2, 7, 6)
    mask = torch.rand(2, 7) > 0.3
    mask[:, 0] = True
    state: dict = {}
    picks, logps = [], []
    for _ in range(3):
        q = torch.randn(2, 1, 4)
        _, w, state = attn(q, k, mask=mask, state=state)
        probs = masked_softmax(attn.scores(q, k), mask[:, None])[:, 0]
        picks.append(w[:, 0].argmax(-1))
        logps.append(probs.gather(-1, picks[-1][:, None]).log()[:, 0])
    assert state["log_prob"].shape == (2, 3) and state["entropy"].shape == (2, 3)
    torch.testing.assert_close(state["log_prob"], torch.stack(logps, 1), rtol=0, atol=1e-6)


def test_reinforce_loss_and_baseline_hand_computed():
    attn = HardAttention(2, 2, estimator="reinforce", baseline_decay=0.9)
    attn.baseline.fill_(0.5)
    log_prob = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    state = {"log_prob": log_prob, "entropy": torch.tensor([[0.3, 0.1], [0.2, 0.4]])}
    loss = attn.reinforce_loss(torch.tensor([1.5, -0.5]), state, entropy_weight=0.5)
    # advantages 1.0 and -1.0 against the old baseline 0.5;
    # batch 0: 1.0 * (-3.0) + 0.5 * 0.4 = -2.8; batch 1: -1.0 * (-0.5) + 0.5 * 0.6 = 0.8
    assert loss.item() == pytest.approx(-(-2.8 + 0.8) / 2)
    assert attn.baseline.item() == pytest.approx(0.9 * 0.5 + 0.1 * 0.5)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))
    per_step = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    attn.reinforce_loss(per_step, state)
    assert attn.baseline.item() == pytest.approx(0.9 * 0.5 + 0.1 * 0.25)


def test_reinforce_bandit_raises_probability_of_rewarded_position():
    torch.manual_seed(1234)
    attn, keys = _bandit("reinforce", lk=4)
    with torch.no_grad():
        attn.bilinear.weight.zero_()  # uniform start: p(2) = 0.25
    opt = torch.optim.SGD(attn.parameters(), lr=1.0)
    query = torch.ones(16, 1, 1)
    batch_keys = keys.expand(16, -1, -1)
    for _ in range(20):
        _, w, state = attn(query, batch_keys)
        reward = (w[:, 0].argmax(-1) == 2).float()  # (B,)
        opt.zero_grad()
        attn.reinforce_loss(reward, state).backward()
        opt.step()
    probs = torch.softmax(attn.bilinear.weight[0].detach(), -1)
    assert probs[2] > 0.8, probs
    assert 0.0 < attn.baseline.item() <= 1.0


def test_gumbel_bandit_gradients_are_finite_and_point_the_right_way():
    attn, keys = _bandit("gumbel", lk=4)
    values = torch.tensor([[[0.0], [0.0], [1.0], [0.0]]])  # only position 2 pays
    ctx, _, _ = attn(torch.ones(1, 256, 1), keys, values)
    (-ctx.mean()).backward()
    grad = attn.bilinear.weight.grad[0]
    assert torch.isfinite(grad).all()
    assert grad[2] < 0 and grad.argmin() == 2  # gradient descent raises the logit of 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_low_precision_runs(dtype, estimator):
    attn = HardAttention(4, 6, 5, estimator=estimator).to(dtype)
    ctx, w, state = attn(torch.randn(2, 3, 4, dtype=dtype), torch.randn(2, 7, 6, dtype=dtype))
    assert ctx.dtype == dtype and w.dtype == dtype
    assert torch.equal(w.detach().sum(-1), torch.ones(2, 3, dtype=dtype))
    assert torch.isfinite(ctx).all()
    if estimator == "reinforce":
        loss = attn.reinforce_loss(torch.ones(2), state)
    else:
        loss = ctx.float().sum()
    loss.backward()
    grad = attn.key_proj.weight.grad
    assert torch.isfinite(loss) and grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("kwargs, argument", [
    (dict(estimator="score_function"), "estimator"),
    (dict(temperature=0.0), "temperature"),
    (dict(baseline_decay=1.0), "baseline_decay"),
    (dict(hidden_dim=0), "hidden_dim"),
    (dict(query_dim=0), "query_dim"),
])
def test_bad_constructor_arguments_are_named(kwargs, argument):
    base = dict(query_dim=4, key_dim=6)
    base.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        HardAttention(**base)


def test_bad_inputs_are_named():
    attn = HardAttention(4, 6)
    q, k = torch.randn(2, 1, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match="query"):
        attn(torch.randn(2, 1, 3), k)
    with pytest.raises(ValueError, match="keys"):
        attn(q, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="mask"):
        attn(q, k, mask=torch.ones(2, 4, dtype=torch.bool))
    _, _, state = attn(q, k)
    with pytest.raises(ValueError, match="reward"):
        attn.reinforce_loss(torch.ones(3), state)
    with pytest.raises(TypeError, match="reward"):
        attn.reinforce_loss([1.0, 1.0], state)
    with pytest.raises(ValueError, match="state"):
        attn.reinforce_loss(torch.ones(2), {})
