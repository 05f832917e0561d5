"""The ``triton`` backend: FlashAttention-2 in Triton, fused forward and backward with
structured masks and score mods.

The algorithm is FlashAttention-2, Tri Dao 2023, "FlashAttention-2: Faster
Attention with Better Parallelism and Work Partitioning" (arXiv:2307.08691):
each forward program owns a block of query rows and streams key/value blocks
through an online softmax (running max ``m``, running sum ``l``, unnormalized
float32 accumulator rescaled once at the end). The backward pass recomputes the
probabilities ``P`` tile by tile: a small kernel first computes
``delta = rowsum(dO * O)``, then a program that owns a key block accumulates dK
and dV while it walks the query blocks that can see it.

Semantics are those of :func:`attnkit.functional.reference.reference_attention`
with the mask and score_mod described by a :class:`~attnkit.kernels.spec.KernelSpec`:
``s = q . k * scale``, then ALiBi, then soft-capping, then the mask (``-inf``);
a query row with nothing to attend to gets a zero output, ``lse = -inf`` and zero
gradients.

Where this implementation deviates from the paper:

* dQ is computed by a third kernel that walks the key blocks of one query block
  (recomputing ``S`` and ``dP``), instead of the paper's atomic adds into a
  float32 dQ buffer. It costs two extra tile products per tile, but it is
  deterministic and needs no scratch buffer.
* The forward saves each row's max logit ``m`` and ``1 / l`` (beside the public
  ``lse``), and the backward forms ``P = exp(s - m) / l`` instead of
  ``exp(s - lse)``: the float32 rounding of ``lse = m + log l`` (half an ulp of
  ``|lse|``) would otherwise enter every weight, which shows in float32 gradients.
  It costs one more float32 per query row.
* ``delta`` accumulates in float64 for float32 inputs: a row that attends to a
  few keys makes ``dP - delta`` cancel almost exactly.
* Grouped-query attention: the dK/dV program of a key/value head loops over the
  query heads of its group and sums their contributions in registers; K and V are
  never repeated in memory.
* Block skipping: for every query block (or key block, in the dK/dV kernel) the
  range of tiles that the causal and sliding-window terms can touch is computed
  up front; the loop covers only that range and splits it into edge tiles (with
  element masks) and interior tiles (no mask arithmetic, unless document ids are
  present, which are always checked per element). Key padding shortens the range.
  Document ids do not skip tiles.
* Logits keep the reference's order of operations (``(q . k) * scale`` in float32,
  natural ``exp``) instead of folding ``scale * log2(e)`` into ``q``, so the kernel
  rounds like the oracle. Float32 inputs use full-precision products (no TF32).
* Under ``TRITON_INTERPRET=1`` (CPU testing) the tile products upcast their
  operands to float32 and the float32 -> bfloat16 casts round to nearest even by
  hand: the interpreter multiplies raw bfloat16 bit patterns and truncates on
  casts. Neither change is compiled into the GPU kernels.

Shape legend: ``B`` batch, ``Hq`` query heads, ``Hkv`` key/value heads
(``Hq % Hkv == 0``), ``Lq``/``Lk`` query/key lengths, ``D`` query/key head dim,
``Dv`` value head dim.

Files: :mod:`.jit` (device helpers shared by the kernels), :mod:`.forward` and
:mod:`.backward` (the kernels), :mod:`.launch` (host side: checks, tile sizes,
launches, autograd), :mod:`.backend` (the registry entry). This package imports
nothing from triton itself, so listing the backends stays cheap; import
:mod:`attnkit.kernels.triton.launch` for the kernel functions.
"""
