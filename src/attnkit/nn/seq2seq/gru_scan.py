"""A one-layer GRU over a whole sequence, fused: the encoders' and the fixed-vector decoder's
recurrence, for training.

The GRU of Cho et al. (2014, arXiv:1406.1078) in ``nn.GRU``'s form (gate order r, z, n)::

    r, z = sigmoid(x_r + W_hr s + b_hr), sigmoid(x_z + W_hz s + b_hz)
    n = tanh(x_n + r * (W_hn s + b_hn))          s' = (1 - z) * n + z * s

where ``x = W_ih x_t + b_ih`` (the *input gates*) is computed by the caller for all steps
at once. :func:`gru_scan` runs ``D`` independent recurrences side by side (``D = 2`` for
the two directions of a bidirectional encoder, each with its own weights), with an
optional per-row mask that holds a row's state still where its sequence has ended, which
is what ``nn.GRU`` computes on a packed sequence.

Why it is faster than ``nn.GRU`` under autograd on a CPU: ``nn.GRU`` records every step's
operations, so its backward runs ``T`` small weight-gradient products and allocates a
graph per step. :class:`_GRUScan` has a hand-written backward whose loop carries only the
gradient of the state, one batched product per step for all directions; the weights'
gradients are one product over all ``T B`` steps after the loop. On CPUs the cell's
elementwise work around the products (gates, candidate, update; their gradients) is one
compiled pass per step (:mod:`attnkit.kernels.cpu_ext`, ``tanh`` as ``2 sigmoid(2x) - 1``)
instead of about six operations forward and sixteen backward; without a compiler the same
formulas run as PyTorch operations. Values and gradients equal ``nn.GRU``'s to
floating-point rounding (tests compare them in float64 and float32). No double backward.
"""

from __future__ import annotations

import torch

from attnkit.kernels import cpu_ext

__all__ = ["gru_scan"]


def gru_scan(input_gates: torch.Tensor, hidden: torch.Tensor, weight_hh: torch.Tensor,
             bias_hh: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``D`` GRU recurrences over ``T`` steps (equations in the module docstring).

    Args:
        input_gates: ``(T, D, B, 3H)`` ``W_ih x_t + b_ih`` of every step, time-major.
        hidden: ``(D, B, H)`` initial states.
        weight_hh: ``(D, 3H, H)`` hidden-side weights (``nn.GRU``'s ``weight_hh_l0``, and
            ``weight_hh_l0_reverse`` for the second direction).
        bias_hh: ``(D, 3H)``.
        mask: ``(T, B)`` bool or None. Where False, the step leaves that row's state
            unchanged (the row's sequence has ended); None = every step is real.

    Returns:
        ``(T, D, B, H)``: the state after each step (where ``mask`` is False, the state
        carried from the row's last real step). ``[-1]`` is every row's final state.
    """
    steps, directions, batch, gates = input_gates.shape
    size = gates // 3
    if gates != 3 * size or hidden.shape != (directions, batch, size):
        raise ValueError(f"gru_scan: input_gates (T, D, B, 3H) {tuple(input_gates.shape)} and "
                         f"hidden (D, B, H) {tuple(hidden.shape)} disagree")
    if weight_hh.shape != (directions, 3 * size, size) or bias_hh.shape != (directions,
                                                                            3 * size):
        raise ValueError(f"gru_scan: weight_hh must be (D, 3H, H) = {(directions, 3 * size, size)}"
                         f" and bias_hh (D, 3H), got {tuple(weight_hh.shape)} and "
                         f"{tuple(bias_hh.shape)}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != (steps, batch)):
        raise ValueError(f"gru_scan: mask must be a (T, B) = {(steps, batch)} bool tensor, got "
                         f"{mask.dtype} {tuple(mask.shape)}")
    return _GRUScan.apply(input_gates, hidden, weight_hh, bias_hh, mask)


class _GRUScan(torch.autograd.Function):
    """Forward loop and hand-written backward loop of :func:`gru_scan`."""

    @staticmethod
    def forward(ctx, input_gates, hidden, weight_hh, bias_hh, mask):
        steps, directions, batch, gates = input_gates.shape
        size = gates // 3
        weight_t = weight_hh.transpose(1, 2)  # (D, H, 3H)
        bias = bias_hh[:, None]  # (D, 1, 3H)
        new = input_gates.new_empty
        states = new(steps, directions, batch, size)
        gate_rz, candidates, hidden_n = (new(steps, directions, batch, 2 * size),
                                         new(steps, directions, batch, size),
                                         new(steps, directions, batch, size))
        kernels = cpu_ext.for_tensor(input_gates)
        rows = directions * batch
        state = hidden
        for i in range(steps):
            projected = torch.baddbmm(bias, state, weight_t)  # (D, B, 3H)
            cell_forward(kernels, _rows(input_gates[i]), projected.view(rows, -1), _rows(state),
                         None if mask is None else mask[i].contiguous(),
                         gate_rz[i].view(rows, -1), hidden_n[i].view(rows, -1),
                         candidates[i].view(rows, -1), states[i].view(rows, -1))
            state = states[i]
        ctx.save_for_backward(hidden, weight_hh, mask, states, gate_rz, candidates, hidden_n)
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states):
        hidden, weight_hh, mask, states, gate_rz, candidates, hidden_n = ctx.saved_tensors
        steps, directions, batch, size = states.shape
        grad_x = states.new_empty(steps, directions, batch, 3 * size)  # d loss / d gates
        grad_h = states.new_empty(steps, directions, batch, 3 * size)  # ... of W_hh s + b_hh
        grad_state = states.new_zeros(directions, batch, size)
        kernels = cpu_ext.for_tensor(states)
        rows = directions * batch
        carried = torch.empty_like(grad_state)  # the part of d loss / d s_{i-1} beside W_hh
        for i in reversed(range(steps)):
            previous = hidden if i == 0 else states[i - 1]
            cell_backward(kernels, _rows(grad_state), _rows(grad_states[i]), _rows(previous),
                          gate_rz[i].view(rows, -1), candidates[i].view(rows, -1),
                          hidden_n[i].view(rows, -1),
                          None if mask is None else mask[i].contiguous(),
                          grad_x[i].view(rows, -1), grad_h[i].view(rows, -1),
                          carried.view(rows, -1))
            grad_state = torch.baddbmm(carried, grad_h[i], weight_hh)  # d loss / d s_{i-1}
        previous_states = torch.cat([hidden[None], states[:-1]], 0)  # (T, D, B, H)
        flat = steps * batch
        grad_weight_hh = torch.bmm(
            grad_h.transpose(0, 1).reshape(directions, flat, 3 * size).transpose(1, 2),
            previous_states.transpose(0, 1).reshape(directions, flat, size))  # (D, 3H, H)
        grad_bias_hh = grad_h.sum((0, 2))  # (D, 3H)
        return grad_x, grad_state, grad_weight_hh, grad_bias_hh, None


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """``(..., H)`` as ``(N, H)`` rows with unit stride along H (a copy only where needed)."""
    flat = tensor.reshape(-1, tensor.shape[-1])
    return flat if flat.stride(-1) == 1 else flat.contiguous()


def cell_forward(kernels, input_gates: torch.Tensor, hidden_gates: torch.Tensor,
                 previous: torch.Tensor, keep: torch.Tensor | None, gate_rz: torch.Tensor,
                 hidden_n: torch.Tensor, candidate: torch.Tensor,
                 state: torch.Tensor) -> torch.Tensor:
    """One GRU cell step after its matrix products, on ``N`` rows (the module docstring's
    equations), shared by the fused loops of this package.

    Args:
        kernels: :func:`attnkit.kernels.cpu_ext.for_tensor`'s answer: the compiled step (one
            pass), or None for the PyTorch operations below (the readable twin the tests
            compare it with).
        input_gates: ``(N, 3H)`` ``W_ih x + b_ih``.
        hidden_gates: ``(N, >= 3H)`` ``W_hh s + b_hh`` (columns past ``3H`` are not read).
        previous: ``(N, H)`` the state ``s``.
        keep: None, or bool ``(K,)`` with ``N`` a multiple of ``K``: row ``i`` keeps ``s``
            where ``keep[i % K]`` is False (direction-major rows share a ``(B,)`` mask).
        gate_rz, hidden_n, candidate, state: ``(N, 2H)``, ``(N, H)`` x 3, written: ``r, z``,
            ``W_hn s + b_hn``, ``n`` and ``s'``. Every tensor has unit stride along its last
            dimension.

    Returns:
        ``state``.
    """
    if kernels:
        kernels.gru_forward(input_gates, hidden_gates, previous, keep, gate_rz, hidden_n,
                            candidate, state)
        return state
    size = previous.shape[-1]
    rz = torch.sigmoid(torch.add(input_gates[:, :2 * size], hidden_gates[:, :2 * size],
                                 out=gate_rz), out=gate_rz)
    hidden_n.copy_(hidden_gates[:, 2 * size:3 * size])
    n = torch.tanh(torch.addcmul(input_gates[:, 2 * size:], rz[:, :size], hidden_n),
                   out=candidate)
    updated = torch.lerp(n, previous, rz[:, size:])  # n + z (s - n)
    if keep is not None:
        updated = torch.where(_per_row(keep, previous.shape[0]), updated, previous)
    return state.copy_(updated)


def cell_backward(kernels, grad_state: torch.Tensor, incoming: torch.Tensor | None,
                  previous: torch.Tensor, gate_rz: torch.Tensor, candidate: torch.Tensor,
                  hidden_n: torch.Tensor, keep: torch.Tensor | None, grad_input: torch.Tensor,
                  grad_hidden: torch.Tensor, carried: torch.Tensor) -> torch.Tensor:
    """The backward of :func:`cell_forward` before its matrix products, on ``N`` rows.

    ``g = grad_state + incoming`` (``(N, H)`` each; ``incoming`` may be None) is
    d loss / d ``s'``; ``previous``, ``gate_rz``, ``candidate``, ``hidden_n`` and ``keep`` are
    what the forward used and wrote. Writes d loss / d ``input_gates`` into ``grad_input
    (N, 3H)``, d loss / d ``hidden_gates`` into the first ``3H`` columns of ``grad_hidden``,
    and into ``carried (N, H)`` the part of d loss / d ``s`` that does not pass through
    ``W_hh s`` (``z g``, or ``g`` for a held row); returns ``carried``. ``kernels`` as in
    :func:`cell_forward`.
    """
    if kernels:
        kernels.gru_backward(grad_state, incoming, previous, gate_rz, candidate, hidden_n, keep,
                             grad_input, grad_hidden, carried)
        return carried
    size = previous.shape[-1]
    grad = grad_state if incoming is None else grad_state + incoming
    kept = None if keep is None else _per_row(keep, previous.shape[0]).to(grad.dtype)
    step = grad if kept is None else grad * kept  # a held row's step is the identity
    r, z = gate_rz[:, :size], gate_rz[:, size:]
    grad_n_pre = step * (1 - z) * (1 - candidate * candidate)
    torch.mul(grad_n_pre * hidden_n, r * (1 - r), out=grad_input[:, :size])
    torch.mul(step * (previous - candidate), z * (1 - z), out=grad_input[:, size:2 * size])
    grad_input[:, 2 * size:] = grad_n_pre
    grad_hidden[:, :2 * size] = grad_input[:, :2 * size]
    torch.mul(grad_n_pre, r, out=grad_hidden[:, 2 * size:3 * size])
    # s' = n + z (s - n): d s' / d s = z where the row steps, 1 where it is held
    return carried.copy_(step * z if kept is None else grad - step * (1 - z))


def _per_row(keep: torch.Tensor, rows: int) -> torch.Tensor:
    """A ``(K,)`` bool pattern repeated over ``rows`` rows, as a ``(rows, 1)`` column."""
    return keep.repeat(rows // keep.numel())[:, None]
