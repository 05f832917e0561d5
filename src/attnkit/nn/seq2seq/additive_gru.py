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
* ``tanh(x)`` is taken as ``2 sigmoid(2x) - 1``: on CPUs torch's float32 ``sigmoid`` is
  several times faster than its ``tanh`` (0.26 against 2.1 ms over a 180 x 26 x 256
  tensor, 2-core AMD EPYC), the ``- 1`` only shifts every energy of a row by ``sum(v)``,
  which the softmax ignores, and ``1 - tanh^2 = 4 u (1 - u)``.
* On CPUs each step's attention, forward and backward, is one compiled kernel
  (:mod:`attnkit.kernels.cpu_ext`): one pass over the keys instead of five to seven over
  ``(B, S, d)`` tensors; where it cannot be built, the same formulas run as PyTorch
  operations.
* ``u`` of shape ``(B, S, d)`` is not kept for backward but recomputed there, so memory
  stays ``O(B T (H + S))`` beyond the inputs, as with the chunked kernel of
  :mod:`attnkit.functional.additive`.

Outputs equal the step-by-step modules' to floating-point rounding (tests compare values
and gradients in float64 and float32). No double backward.
"""

from __future__ import annotations

import torch

from attnkit.kernels import cpu_ext
from attnkit.nn.seq2seq.gru_scan import cell_backward, cell_forward

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
        kernels = cpu_ext.for_tensor(key_proj)
        energy = None if kernels else torch.empty_like(key_proj)  # (B, S, d), every step's
        doubled_keys = (key_proj * 2).contiguous()
        doubled_score = score_vector * 2
        mask = mask.contiguous()
        state = hidden
        for i in range(steps):
            projected = torch.addmm(stacked_bias, state, stacked)  # (B, 3H + d)
            query = projected[:, 3 * size:]
            queries[i] = query
            # u = sigmoid(2 (q_i + k_j)), tanh = 2 u - 1, so e_ij = 2 v.u - sum(v): the
            # constant drops out of the softmax
            if kernels:
                kernels.additive_forward(doubled_keys, query, doubled_score, mask, weights[i])
                attention = weights[i]
            else:
                torch.add(doubled_keys, query[:, None], alpha=2, out=energy).sigmoid_()
                scores = energy @ doubled_score  # (B, S), e_ij + sum(v)
                if padded:
                    scores.masked_fill_(blocked, float("-inf"))
                attention = torch.softmax(scores, -1)  # (B, S)
                weights[i] = attention
            context = torch.bmm(attention[:, None], memory)[:, 0]  # (B, H)
            contexts[i] = context
            x = torch.addmm(input_gates[i], context, context_t)  # (B, 3H)
            state = cell_forward(kernels, x, projected, state, None, gate_rz[i], hidden_n[i],
                                 candidates[i], states[i])
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
        # d e_ij / d (q_i + k_j) = v (1 - tanh^2) = 4 v u (1 - u): v is the same at every
        # step, so the backward loop accumulates sum_i g_ij u (1 - u) (B, S, d) and multiplies
        # by 4 v once after it
        grad_key_proj = torch.zeros_like(key_proj, memory_format=torch.contiguous_format)
        doubled_keys = (key_proj * 2).contiguous()
        quadrupled_score = score_vector * 4
        kernels = cpu_ext.for_tensor(key_proj)
        if kernels:
            grad_rows = key_proj.new_zeros(batch, score_vector.shape[0])  # sum_ij g (u - 1/2)
        else:
            energy, slope = torch.empty_like(doubled_keys), torch.empty_like(doubled_keys)
            grad_score = score_vector.new_zeros(score_vector.shape[0])  # sum_i,bj g (u - 1/2)
        grad_state = new(batch, size)
        carried = new(batch, size)  # z * d loss / d s_i
        for i in reversed(range(steps)):
            previous = hidden if i == 0 else states[i - 1]
            gx, gp = grad_x[i], grad_projected[i]
            cell_backward(kernels, grad_state, grad_states[i], previous, gate_rz[i],
                          candidates[i], hidden_n[i], None, gx, gp, carried)  # gp[:, :3H]
            # c_i enters x through context_weight, and the output layer directly
            gc = torch.addmm(grad_contexts[i], gx, context_weight, out=grad_context[i])
            # c_i = a_i @ memory;  a_i = softmax(e_i);  e_ij = v . (2 u_ij - 1)
            attention = weights[i]
            # (B, 1, H) @ (B, H, S): the layout MKL runs fast (memory @ gc is 5-10x slower)
            grad_attention = torch.bmm(gc[:, None], memory.transpose(1, 2))[:, 0]  # (B, S)
            if kernels:
                kernels.additive_backward(doubled_keys, queries[i], quadrupled_score, attention,
                                          grad_attention, grad_key_proj, gp[:, 3 * size:],
                                          grad_rows)
            else:
                grad_energy = attention * (grad_attention - (attention * grad_attention)
                                           .sum(-1, keepdim=True))  # d loss / d e_i, (B, S)
                # recomputed: u = sigmoid(2 (q_i + k_j))
                torch.add(doubled_keys, queries[i][:, None], alpha=2, out=energy).sigmoid_()
                torch.addcmul(energy, energy, energy, value=-1, out=slope)  # u (1 - u)
                # d loss / d v = sum g (2 u - 1) = 2 sum g (u - 1/2): centred terms, as with
                # tanh (2 sum g u, equal as sum_j g_ij = 0, loses more to cancellation)
                grad_score += torch.bmm(grad_energy[:, None], energy.sub_(0.5))[:, 0].sum(0)
                # d loss / d q_i = 4 v sum_j g_ij u_ij (1 - u_ij)
                torch.mul(torch.bmm(grad_energy[:, None], slope)[:, 0], quadrupled_score,
                          out=gp[:, 3 * size:])
                grad_key_proj.addcmul_(slope, grad_energy[:, :, None])
            grad_state = torch.addmm(carried, gp, stacked)  # d loss / d s_{i-1}
        grad_key_proj.mul_(quadrupled_score)
        grad_score = (grad_rows.sum(0) if kernels else grad_score).mul_(2)
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
                grad_bias_hh, grad_query_weight, grad_context_weight, grad_score)
