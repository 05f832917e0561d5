"""The teacher-forced recurrence of a one-layer GRU decoder with Luong attention and input
feeding, fused.

Paper: Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural Machine
Translation", arXiv:1508.04025 (global attention with the ``dot`` or ``general`` score,
section 3.1, and input feeding, section 3.3), on the GRU of Cho et al. (2014),
arXiv:1406.1078. At target step ``t`` (``h_0`` = the bridge's initial state, ``o_0 = 0``)::

    x_t = W_ih [E y_{t-1}; o_{t-1}] + b_ih
    r, z = sigmoid(x_r + W_hr h_{t-1} + b_hr), sigmoid(x_z + W_hz h_{t-1} + b_hz)
    n = tanh(x_n + r * (W_hn h_{t-1} + b_hn))       h_t = (1 - z) * n + z * h_{t-1}
    a_t = softmax_s(h_t . k_s) over real source tokens      c_t = sum_s a_ts h_s
    o_t = tanh(W_c [c_t; h_t])

with ``k_s = W_a h_s`` (``general``) or ``h_s`` (``dot``). This is what
:class:`attnkit.models.RNNSeq2Seq` computes with :class:`LuongAttention` (no score scale), a
one-layer GRU decoder and input feeding; :func:`luong_gru_decode` is its training path, with
the same parameters.

As in :mod:`attnkit.nn.seq2seq.additive_gru`: the embedding part of ``W_ih`` comes for all
steps from the caller, the backward loop is written by hand and carries only the recurrent
gradients (of ``h`` and of ``o``), and every weight's gradient, the keys' and the values'
are one batched matrix product over all steps after it. No double backward.
"""

from __future__ import annotations

import torch

from attnkit.kernels import cpu_ext
from attnkit.nn.seq2seq.gru_scan import cell_backward, cell_forward

__all__ = ["luong_gru_decode"]


def luong_gru_decode(input_gates: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor,
                     memory: torch.Tensor, key_proj: torch.Tensor, mask: torch.Tensor,
                     weight_hh: torch.Tensor, bias_hh: torch.Tensor, feed_weight: torch.Tensor,
                     output_weight: torch.Tensor) -> torch.Tensor:
    """Run the decoder over ``T`` teacher-forced steps (equations in the module docstring).

    Args:
        input_gates: ``(T, B, 3H)`` time-major, ``W_ih[:, :E] E y + b_ih`` of every step.
        hidden: ``(B, H)`` the initial state ``h_0``.
        feed: ``(B, H)`` ``o_0`` (zeros in the model).
        memory: ``(B, S, H)`` encoder states ``h_s`` (the values).
        key_proj: ``(B, S, H)`` the keys ``k_s``.
        mask: ``(B, S)`` bool, True = real source token; every row needs at least one.
        weight_hh, bias_hh: ``(3H, H)``, ``(3H,)`` the GRU's hidden-side weights.
        feed_weight: ``(3H, H)`` the columns of ``W_ih`` that act on ``o_{t-1}``.
        output_weight: ``(H, 2H)`` ``W_c``.

    Returns:
        ``outputs (T, B, H)``: the attentional vectors ``o_1 .. o_T``.
    """
    return _LuongGRU.apply(input_gates, hidden, feed, memory, key_proj, mask, weight_hh,
                           bias_hh, feed_weight, output_weight)


class _LuongGRU(torch.autograd.Function):
    """Forward loop and hand-written backward loop of :func:`luong_gru_decode`."""

    @staticmethod
    def forward(ctx, input_gates, hidden, feed, memory, key_proj, mask, weight_hh, bias_hh,
                feed_weight, output_weight):
        steps, batch, gates = input_gates.shape
        size = gates // 3
        new = input_gates.new_empty
        joined = new(steps, batch, 2 * size)  # [c_t; h_t], the output layer's input
        outputs = new(steps, batch, size)
        weights = new(steps, batch, mask.shape[1])
        gate_rz, candidates, hidden_n = new(steps, batch, 2 * size), new(steps, batch, size), \
            new(steps, batch, size)
        blocked = ~mask
        any_blocked = bool(blocked.any())
        hh_t, feed_t, out_t = weight_hh.t(), feed_weight.t(), output_weight.t()
        keys_t = key_proj.transpose(1, 2)  # (B, H, S)
        kernels = cpu_ext.for_tensor(input_gates)
        state, previous_out = hidden, feed
        for i in range(steps):
            x = torch.addmm(input_gates[i], previous_out, feed_t)  # (B, 3H)
            projected = torch.addmm(bias_hh, state, hh_t)  # (B, 3H)
            state = cell_forward(kernels, x, projected, state, None, gate_rz[i], hidden_n[i],
                                 candidates[i], joined[i, :, size:])
            scores = torch.bmm(state[:, None], keys_t)[:, 0]  # (B, S)
            if any_blocked:
                scores.masked_fill_(blocked, float("-inf"))
            attention = torch.softmax(scores, -1)
            weights[i] = attention
            joined[i, :, :size] = torch.bmm(attention[:, None], memory)[:, 0]  # c_t
            previous_out = torch.mm(joined[i], out_t, out=outputs[i]).tanh_()
        ctx.save_for_backward(hidden, feed, memory, key_proj, weight_hh, feed_weight,
                              output_weight, joined, outputs, weights, gate_rz, candidates,
                              hidden_n)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs):
        (hidden, feed, memory, key_proj, weight_hh, feed_weight, output_weight, joined,
         outputs, weights, gate_rz, candidates, hidden_n) = ctx.saved_tensors
        steps, batch, size = outputs.shape
        new = outputs.new_empty
        grad_x = new(steps, batch, 3 * size)  # d loss / d x_t
        grad_projected = new(steps, batch, 3 * size)  # d loss / d (W_hh h + b_hh)
        grad_out_pre = new(steps, batch, size)  # d loss / d (W_c [c; h])
        grad_context = new(steps, batch, size)
        grad_energy = new(steps, batch, memory.shape[1])  # d loss / d scores
        grad_state = outputs.new_zeros(batch, size)
        grad_feed = outputs.new_zeros(batch, size)  # into o_t from step t + 1's input
        kernels = cpu_ext.for_tensor(outputs)
        carried = outputs.new_empty(batch, size)  # z * d loss / d h_t
        for i in reversed(range(steps)):
            out = outputs[i]
            g_pre = torch.mul(grad_outputs[i] + grad_feed, 1 - out * out, out=grad_out_pre[i])
            g_joined = g_pre @ output_weight  # (B, 2H)
            g_context = grad_context[i]
            g_context.copy_(g_joined[:, :size])
            attention = weights[i]
            # (B, 1, H) @ (B, H, S): the layout MKL runs fast (memory @ g is 5-10x slower)
            g_attention = torch.bmm(g_context[:, None], memory.transpose(1, 2))[:, 0]  # (B, S)
            g_energy = torch.mul(attention, g_attention - (attention * g_attention)
                                 .sum(-1, keepdim=True), out=grad_energy[i])
            grad_state += g_joined[:, size:]
            grad_state += torch.bmm(g_energy[:, None], key_proj)[:, 0]  # scores = K h
            previous = hidden if i == 0 else joined[i - 1, :, size:]
            gx, gp = grad_x[i], grad_projected[i]
            cell_backward(kernels, grad_state, None, previous, gate_rz[i], candidates[i],
                          hidden_n[i], None, gx, gp, carried)
            grad_feed = gx @ feed_weight  # d loss / d o_{t-1}
            grad_state = torch.addmm(carried, gp, weight_hh)  # d loss / d h_{t-1}
        flat = steps * batch
        states = joined[:, :, size:]  # (T, B, H)
        previous_states = torch.cat([hidden[None], states[:-1]], 0).reshape(flat, size)
        previous_outputs = torch.cat([feed[None], outputs[:-1]], 0).reshape(flat, size)
        grad_weight_hh = grad_projected.reshape(flat, -1).t() @ previous_states
        grad_bias_hh = grad_projected.sum((0, 1))
        grad_feed_weight = grad_x.reshape(flat, -1).t() @ previous_outputs
        grad_output_weight = grad_out_pre.reshape(flat, -1).t() @ joined.reshape(flat, -1)
        by_batch = grad_energy.permute(1, 2, 0)  # (B, S, T)
        grad_memory = torch.bmm(weights.permute(1, 2, 0), grad_context.transpose(0, 1))
        grad_key_proj = torch.bmm(by_batch, states.transpose(0, 1))
        return (grad_x, grad_state, grad_feed, grad_memory, grad_key_proj, None,
                grad_weight_hh, grad_bias_hh, grad_feed_weight, grad_output_weight)
