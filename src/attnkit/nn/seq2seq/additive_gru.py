"""The teacher-forced recurrence of a one-layer GRU decoder with additive attention, fused.

Paper: Bahdanau, Cho & Bengio (2014), "Neural Machine Translation by Jointly Learning to
Align and Translate", arXiv:1409.0473 (appendix A.1.2 for the attention, the GRU of Cho et
al. 2014, arXiv:1406.1078). At decoder step ``i`` (``s_0`` = the bridge's initial state)::

    e_ij = v^T tanh(W_a s_{i-1} + U h_j)    a_i = softmax_j(e_ij) over real source tokens
    c_i = sum_j a_ij h_j
    r, z = sigmoid(x_r + W_hr s_{i-1} + b_hr), sigmoid(x_z + W_hz s_{i-1} + b_hz)
    n = tanh(x_n + r * (W_hn s_{i-1} + b_hn))       s_i = (1 - z) * n + z * s_{i-1}

with ``x = W_ih [E y_{i-1}; c_i] + b_ih`` (``nn.GRU``'s gate order r, z, n). This is exactly
what :class:`attnkit.models.RNNSeq2Seq` computes with :class:`AdditiveAttention` and a
one-layer GRU decoder without input feeding; :func:`additive_gru_decode` is its training
path, with the same parameters.

What makes it faster than running the step's modules under autograd:

* ``W_hh s`` and ``W_a s`` are one matrix product per step (the two weights stacked), the
  embedding part of ``W_ih`` is given for all steps at once by the caller, and ``U h_j`` is
  the attention's per-source state.
* A hand-written backward (:class:`_AdditiveGRU`): the backward loop carries only what is
  recurrent (the gradient of ``s`` and the accumulated gradient of ``U h``); every weight's
  gradient is one large matrix product over all ``B T`` steps after the loop, instead of
  ``T`` small ones, and no autograd graph is built per step.
* ``tanh(W_a s + U h)`` of shape ``(B, S, d)`` is not kept for backward but recomputed
  there (two elementwise passes), so memory stays ``O(B T (H + S))`` beyond the inputs,
  as with the chunked kernel of :mod:`attnkit.functional.additive`.

Outputs equal the step-by-step modules' to floating-point rounding (tests compare values
and gradients in float64 and float32). No double backward.
"""

from __future__ import annotations

import torch

__all__ = ["additive_gru_decode"]


def additive_gru_decode(input_gates: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor,
                        key_proj: torch.Tensor, mask: torch.Tensor, weight_hh: torch.Tensor,
                        bias_hh: torch.Tensor, query_weight: torch.Tensor,
                        context_weight: torch.Tensor, score_vector: torch.Tensor,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the decoder over ``T`` teacher-forced steps (equations in the module docstring).

    Args:
        input_gates: ``(T, B, 3H)`` time-major, ``W_ih[:, :E] E y + b_ih`` of every step.
        hidden: ``(B, H)`` the initial state ``s_0``.
        memory: ``(B, S, H)`` encoder states ``h_j`` (keys and values).
        key_proj: ``(B, S, d)`` ``U h_j`` (with the attention's bias, if any).
        mask: ``(B, S)`` bool, True = real source token; every row needs at least one.
        weight_hh, bias_hh: ``(3H, H)``, ``(3H,)`` the GRU's hidden-side weights.
        query_weight: ``(d, H)`` ``W_a``.
        context_weight: ``(3H, H)`` the columns of ``W_ih`` that act on ``c_i``.
        score_vector: ``(d,)`` ``v``.

    Returns:
        ``states (T, B, H)`` (``s_1 .. s_T``) and ``contexts (T, B, H)`` (``c_1 .. c_T``).
    """
    return _AdditiveGRU.apply(input_gates, hidden, memory, key_proj, mask, weight_hh, bias_hh,
                              query_weight, context_weight, score_vector)


class _AdditiveGRU(torch.autograd.Function):
    """Forward loop and hand-written backward loop of :func:`additive_gru_decode`."""

    @staticmethod
    def forward(ctx, input_gates, hidden, memory, key_proj, mask, weight_hh, bias_hh,
                query_weight, context_weight, score_vector):
        steps, batch, gates = input_gates.shape
        size = gates // 3
        stacked = torch.cat([weight_hh, query_weight], 0).t()  # (H, 3H + d)
        stacked_bias = torch.cat([bias_hh, bias_hh.new_zeros(query_weight.shape[0])])
        context_t = context_weight.t()  # (H, 3H)
        blocked = ~mask  # (B, S)
        padded = bool(blocked.any())
        new = input_gates.new_empty
        states, contexts = new(steps, batch, size), new(steps, batch, size)
        weights = new(steps, batch, mask.shape[1])  # a_i
        queries = new(steps, batch, query_weight.shape[0])  # W_a s_{i-1}
        gate_rz, candidates, hidden_n = new(steps, batch, 2 * size), new(steps, batch, size), \
            new(steps, batch, size)  # r z, n and W_hn s + b_hn of each step
        energy = torch.empty_like(key_proj)  # (B, S, d), reused by every step
        state = hidden
        for i in range(steps):
            projected = torch.addmm(stacked_bias, state, stacked)  # (B, 3H + d)
            query = projected[:, 3 * size:]
            queries[i] = query
            torch.add(key_proj, query[:, None], out=energy).tanh_()
            scores = energy @ score_vector  # (B, S)
            if padded:
                scores.masked_fill_(blocked, float("-inf"))
            attention = torch.softmax(scores, -1)  # (B, S)
            weights[i] = attention
            context = torch.bmm(attention[:, None], memory)[:, 0]  # (B, H)
            contexts[i] = context
            x = torch.addmm(input_gates[i], context, context_t)  # (B, 3H)
            rz = torch.sigmoid(torch.add(x[:, :2 * size], projected[:, :2 * size],
                                         out=gate_rz[i]), out=gate_rz[i])
            hidden_n[i] = projected[:, 2 * size:3 * size]
            n = torch.tanh(torch.addcmul(x[:, 2 * size:], rz[:, :size], hidden_n[i]),
                           out=candidates[i])
            state = torch.lerp(n, state, rz[:, size:], out=states[i])
        ctx.save_for_backward(hidden, memory, key_proj, weight_hh, query_weight, context_weight,
                              score_vector, states, contexts, weights, queries, gate_rz,
                              candidates, hidden_n)
        return states, contexts

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states, grad_contexts):
        (hidden, memory, key_proj, weight_hh, query_weight, context_weight, score_vector,
         states, contexts, weights, queries, gate_rz, candidates, hidden_n) = ctx.saved_tensors
        steps, batch, size = states.shape
        stacked = torch.cat([weight_hh, query_weight], 0)  # (3H + d, H)
        new = states.new_zeros
        grad_states = new(steps, batch, size) if grad_states is None else grad_states
        grad_contexts = new(steps, batch, size) if grad_contexts is None else grad_contexts
        grad_x = states.new_empty(steps, batch, 3 * size)  # d loss / d (W_ih x + b_ih)
        grad_projected = states.new_empty(steps, batch, stacked.shape[0])
        grad_context = states.new_empty(steps, batch, size)  # d loss / d c_i, all paths
        # d e_ij / d (q_i + k_j) = v * (1 - tanh^2): v is the same at every step, so the
        # backward loop accumulates sum_i g_ij and sum_i g_ij tanh^2 (B, S, d) and multiplies
        # by v once after it
        grad_energy_total = key_proj.new_zeros(batch, key_proj.shape[1])  # sum_i g_ij
        squared_total = torch.zeros_like(key_proj)  # sum_i g_ij tanh^2
        energy = torch.empty_like(key_proj)
        grad_score = score_vector.new_zeros(1, score_vector.shape[0])
        grad_state = new(batch, size)
        for i in reversed(range(steps)):
            grad_state += grad_states[i]
            previous = hidden if i == 0 else states[i - 1]
            r, z = gate_rz[i, :, :size], gate_rz[i, :, size:]
            n = candidates[i]
            # s = n + z (s_prev - n)
            grad_n_pre = grad_state * (1 - z) * (1 - n * n)
            gx = grad_x[i]
            torch.mul(grad_n_pre * hidden_n[i], r * (1 - r), out=gx[:, :size])
            torch.mul(grad_state * (previous - n), z * (1 - z), out=gx[:, size:2 * size])
            gx[:, 2 * size:] = grad_n_pre
            gp = grad_projected[i]
            gp[:, :2 * size] = gx[:, :2 * size]
            torch.mul(grad_n_pre, r, out=gp[:, 2 * size:3 * size])
            # c_i enters x through context_weight, and the output layer directly
            gc = torch.addmm(grad_contexts[i], gx, context_weight, out=grad_context[i])
            # c_i = a_i @ memory;  a_i = softmax(e_i);  e_ij = v . tanh(q_i + k_j)
            attention = weights[i]
            grad_attention = torch.bmm(memory, gc[:, :, None])[:, :, 0]  # (B, S)
            grad_energy = attention * (grad_attention - (attention * grad_attention)
                                       .sum(-1, keepdim=True))  # d loss / d e_i, (B, S)
            grad_energy_total += grad_energy
            torch.add(key_proj, queries[i][:, None], out=energy).tanh_()  # recomputed
            grad_score.addmm_(grad_energy.reshape(1, -1), energy.reshape(-1, energy.shape[-1]))
            energy.mul_(energy)  # tanh^2
            # d loss / d q_i = v * (sum_j g_ij - sum_j g_ij tanh^2_ij)
            squared = torch.bmm(grad_energy[:, None], energy)[:, 0]  # (B, d)
            torch.mul(grad_energy.sum(-1, keepdim=True) - squared, score_vector,
                      out=gp[:, 3 * size:])
            squared_total.addcmul_(energy, grad_energy[:, :, None])
            grad_state = torch.addmm(grad_state * z, gp, stacked)  # d loss / d s_{i-1}
        grad_key_proj = torch.sub(grad_energy_total[:, :, None], squared_total,
                                  out=squared_total).mul_(score_vector)
        flat = steps * batch
        previous_states = torch.cat([hidden[None], states[:-1]], 0).reshape(flat, size)
        grad_stacked = grad_projected.reshape(flat, -1).t() @ previous_states  # (3H + d, H)
        grad_weight_hh, grad_query_weight = grad_stacked.split(
            [3 * size, query_weight.shape[0]], 0)
        grad_bias_hh = grad_projected[:, :, :3 * size].sum((0, 1))
        grad_context_weight = grad_x.reshape(flat, -1).t() @ contexts.reshape(flat, size)
        # d loss / d memory from c_i = a_i @ memory, all steps in one batched product
        grad_memory = torch.bmm(weights.permute(1, 2, 0), grad_context.transpose(0, 1))
        return (grad_x, grad_state, grad_memory, grad_key_proj, None, grad_weight_hh,
                grad_bias_hh, grad_query_weight, grad_context_weight, grad_score[0])
