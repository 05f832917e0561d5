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
        keep = None if mask is None else mask[:, None, :, None]  # (T, 1, B, 1)
        kernels = cpu_ext.for_tensor(input_gates)
        rows = directions * batch
        state = hidden
        for i in range(steps):
            projected = torch.baddbmm(bias, state, weight_t)  # (D, B, 3H)
            x = input_gates[i]
            if kernels:  # the cell's equations in one pass over the D B rows
                kernels.gru_forward(_rows(x), projected.view(rows, -1), _rows(state),
                                    None if mask is None else mask[i].contiguous(),
                                    gate_rz[i].view(rows, -1), hidden_n[i].view(rows, -1),
                                    candidates[i].view(rows, -1), states[i].view(rows, -1))
                state = states[i]
                continue
            rz = torch.sigmoid(torch.add(x[..., :2 * size], projected[..., :2 * size],
                                         out=gate_rz[i]), out=gate_rz[i])
            hidden_n[i] = projected[..., 2 * size:]
            n = torch.tanh(torch.addcmul(x[..., 2 * size:], rz[..., :size], hidden_n[i]),
                           out=candidates[i])
            if keep is None:
                state = torch.lerp(n, state, rz[..., size:], out=states[i])
            else:
                state = torch.where(keep[i], torch.lerp(n, state, rz[..., size:]), state,
                                    out=states[i])
        ctx.save_for_backward(hidden, weight_hh, mask, states, gate_rz, candidates, hidden_n)
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states):
        hidden, weight_hh, mask, states, gate_rz, candidates, hidden_n = ctx.saved_tensors
        steps, directions, batch, size = states.shape
        grad_x = states.new_empty(steps, directions, batch, 3 * size)  # d loss / d gates
        grad_h = states.new_empty(steps, directions, batch, 3 * size)  # ... of W_hh s + b_hh
        keep = None if mask is None else mask[:, None, :, None].to(states.dtype)
        grad_state = states.new_zeros(directions, batch, size)
        kernels = cpu_ext.for_tensor(states)
        rows = directions * batch
        carried = torch.empty_like(grad_state) if kernels else None
        for i in reversed(range(steps)):
            previous = hidden if i == 0 else states[i - 1]
            if kernels:  # grad_x[i], grad_h[i] and carried in one pass
                kernels.gru_backward(_rows(grad_state), _rows(grad_states[i]), _rows(previous),
                                     gate_rz[i].view(rows, -1), candidates[i].view(rows, -1),
                                     hidden_n[i].view(rows, -1),
                                     None if mask is None else mask[i].contiguous(),
                                     grad_x[i].view(rows, -1), grad_h[i].view(rows, -1),
                                     carried.view(rows, -1))
                grad_state = torch.baddbmm(carried, grad_h[i], weight_hh)
                continue
            grad_state = grad_state + grad_states[i]
            r, z = gate_rz[i, ..., :size], gate_rz[i, ..., size:]
            n = candidates[i]
            # a masked row's step is the identity: its gradient passes to s_{i-1} unchanged
            grad_step = grad_state if keep is None else grad_state * keep[i]
            grad_n_pre = grad_step * (1 - z) * (1 - n * n)
            gx, gh = grad_x[i], grad_h[i]
            torch.mul(grad_n_pre * hidden_n[i], r * (1 - r), out=gx[..., :size])
            torch.mul(grad_step * (previous - n), z * (1 - z), out=gx[..., size:2 * size])
            gx[..., 2 * size:] = grad_n_pre
            gh[..., :2 * size] = gx[..., :2 * size]
            torch.mul(grad_n_pre, r, out=gh[..., 2 * size:])
            # s' = n + z (s - n): d s' / d s = z, plus the path through W_hh s
            carried = grad_step * z if keep is None else grad_state - grad_step * (1 - z)
            grad_state = torch.baddbmm(carried, gh, weight_hh)  # d loss / d s_{i-1}
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
