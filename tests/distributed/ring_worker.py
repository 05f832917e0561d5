"""One rank of the ring-attention tests, run as its own process by test_ring.py.

    python ring_worker.py RANK WORLD STORE PAYLOAD OUT_DIR

Joins a gloo process group through the file store ``STORE`` (timeout from the payload),
runs the payload's scenario and writes ``OUT_DIR/rank{RANK}.pt`` (tensors and plain
values); exceptions escape, so a failing rank exits non-zero with its traceback on stderr.
The mask specs are shared with the parent test (it builds the same masks for its oracle).
"""

from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist

from attnkit import masks


def build_mask(spec):
    """A mask from a plain spec: None, ("causal",), ("window", size, causal),
    ("document", ids), ("padding", lengths), ("and", [spec, ...]), ("not", spec)."""
    if spec is None:
        return None
    kind = spec[0]
    if kind == "causal":
        return masks.causal()
    if kind == "window":
        return masks.sliding_window(spec[1], causal=spec[2])
    if kind == "document":
        return masks.document(spec[1])
    if kind == "padding":
        return masks.key_padding(spec[1])
    if kind == "and":
        return masks.and_masks(*(build_mask(s) for s in spec[1]))
    if kind == "not":
        return masks.not_mask(build_mask(spec[1]))
    if kind == "dense":
        return spec[1]
    raise ValueError(f"unknown mask spec {kind!r}")


def _error(call) -> tuple[str, str] | None:
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)
    return None


def exact_cases(cases, rank, world):
    from attnkit.distributed import ring_attention, shard

    results = []
    for case in cases:
        layout = case["layout"]
        q, k, v = (shard(case[name], 2, layout).clone().requires_grad_(True)
                   for name in ("q", "k", "v"))
        stats: dict = {}
        out, lse = ring_attention(q, k, v, causal=case["causal"], mask=build_mask(case["mask"]),
                                  layout=layout, block_q=case["block_q"],
                                  block_k=case["block_k"], chunk=case["chunk"], stats=stats)
        out.backward(shard(case["grad"], 2, layout))
        results.append({"out": out.detach(), "lse": lse, "dq": q.grad, "dk": k.grad,
                        "dv": v.grad, "stats": {key: value for key, value in stats.items()
                                                if not key.startswith("compute_s")}})
    return results


def error_cases(rank, world):
    """Calls that must fail on every rank, each with this rank's (type, message)."""
    from attnkit.distributed import ring_attention, shard, unshard

    torch.manual_seed(0)  # the same tensors on every rank (and in the test)
    t = torch.randn(1, 2, 4 * world, 4, dtype=torch.float64)
    n = 2 * world
    x = t[:, :, :n]
    uneven = t[:, :, :n + 2 * (rank == 0)]
    found = {
        "uneven": _error(lambda: ring_attention(uneven, uneven, uneven)),
        "layouts": _error(lambda: ring_attention(
            x, x, x, layout="zigzag" if rank == 0 else "contiguous")),
        "odd_zigzag": _error(lambda: ring_attention(t[:, :, :3], t[:, :, :3], t[:, :, :3])),
        "dense_mask_on_one_rank": _error(lambda: ring_attention(
            x, x, x, mask=torch.ones(n * world, n * world, dtype=torch.bool)
            if rank == 1 else None)),
        "prefix_lm": _error(lambda: ring_attention(x, x, x, mask=masks.prefix_lm(2))),
        "causal_differs": _error(lambda: ring_attention(x, x, x, causal=rank == 0)),
        "document_ids_too_short": _error(lambda: ring_attention(
            x, x, x, mask=masks.document(torch.zeros(n, dtype=torch.long)))),
        "shard_uneven": _error(lambda: shard(t[:, :, :5], 2)),
        "unshard_layouts": _error(lambda: unshard(
            x, 2, "zigzag" if rank == 0 else "contiguous")),
        "unshard_shapes": _error(lambda: unshard(t[:, :, :2 + 2 * rank], 2)),
    }
    # The group still works after every refusal: one more exact call.
    out, _ = ring_attention(x, x, x, causal=True)
    found["after"] = out
    return found


def round_trips(rank, world):
    from attnkit.distributed import shard, unshard

    full = torch.arange(2 * 3 * 8 * world).view(2, 3, 8 * world)
    flags = torch.rand(2, 8 * world) > 0.5
    return {layout: {"shard": shard(full, -1, layout),
                     "back": unshard(shard(full, -1, layout), -1, layout),
                     "flags_back": unshard(shard(flags, 1, layout), 1, layout)}
            for layout in ("contiguous", "zigzag")}


def gpt_gradients(payload, rank, world):
    """Context-parallel loss and summed gradients of a rotary GQA GPT (no Trainer)."""
    from attnkit.distributed import (
        ContextParallelGPT,
        context_parallel_loss,
        shard_batch,
        sync_gradients,
    )
    from attnkit.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**payload["config"])).double()
    cp = ContextParallelGPT(model, layout=payload["layout"])
    loss_sum, count = context_parallel_loss(cp, shard_batch(payload["tokens"],
                                                            layout=payload["layout"]))
    total = torch.tensor([float(count)], dtype=torch.float64)
    dist.all_reduce(total)
    (loss_sum / total).backward()
    sync_gradients(model)
    loss = (loss_sum / total).detach()
    dist.all_reduce(loss)
    return {"loss": loss, "grads": {name: p.grad for name, p in model.named_parameters()}}


def trainer_run(payload, rank, world):
    """A few Trainer updates of a context-parallel GPT; the loss curve and final weights.

    With ``payload["dp"] = D`` the ranks form D data-parallel replicas of W / D
    context-parallel ranks each: replica ``rank // (W / D)`` takes its own chunk of the
    batch (one row each here) and splits them over its own group."""
    from attnkit.distributed import ContextParallelGPT, context_parallel_loss, shard_batch
    from attnkit.models.gpt import GPT, GPTConfig
    from attnkit.train.trainer import TrainConfig, Trainer

    replicas = payload.get("dp", 1)
    size = world // replicas
    groups = [dist.new_group(list(range(r * size, (r + 1) * size))) for r in range(replicas)]
    replica = rank // size
    group = None if replicas == 1 else groups[replica]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**payload["config"])).double()
    cp = ContextParallelGPT(model, layout="zigzag", group=group)
    data = payload["tokens"]  # (steps, B, L + 1)

    def batch_fn(index, rank_, world_):
        rows = data[index].chunk(replicas)[replica]  # this replica's rows
        return shard_batch(rows, group=group)

    trainer = Trainer(cp, TrainConfig(**payload["train"]), batch_fn=batch_fn,
                      loss_fn=lambda m, batch: context_parallel_loss(m, batch))
    trainer.fit()
    losses = [r["loss"] for r in trainer.history if r.get("event") == "train"]
    return {"losses": losses, "state": dict(model.state_dict())}


def memory_peaks(payload, rank, world):
    """Peak tensor bytes above the inputs of a float32 causal ring step, per shard length."""
    from attnkit.bench.ring import tensor_peak_bytes
    from attnkit.distributed import ring_attention

    heads, dim, chunk = payload["heads"], payload["head_dim"], payload["chunk"]
    peaks = {}
    for n in payload["shard_lengths"]:
        gen = torch.Generator().manual_seed(rank)
        q, k, v = (torch.randn(1, heads, n, dim, generator=gen, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn(1, heads, n, dim, generator=gen)

        def step(q=q, k=k, v=v, grad=grad):
            out, _ = ring_attention(q, k, v, causal=True, chunk=chunk, block_q=chunk,
                                    block_k=chunk)
            out.backward(grad)
            q.grad = k.grad = v.grad = None

        step()
        peaks[n] = tensor_peak_bytes(step)
    return peaks


def fail_midway(rank, world):
    """Rank 1 dies between its forward and backward; the others run their backward."""
    from attnkit.distributed import ring_attention

    x = torch.randn(1, 2, 8, 4, dtype=torch.float64, requires_grad=True)
    out, _ = ring_attention(x, x, x, causal=True)
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    out.sum().backward()


def main() -> None:
    rank, world, store, payload_path, out_dir = sys.argv[1:]
    rank, world = int(rank), int(world)
    payload = torch.load(payload_path, weights_only=True)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world,
                            timeout=datetime.timedelta(seconds=payload["timeout_s"]))
    scenario = payload["scenario"]
    if scenario == "fail":
        fail_midway(rank, world)
        result = {}
    else:
        result = {"exact": exact_cases(payload["cases"], rank, world),
                  "round_trips": round_trips(rank, world)}
        if payload.get("errors"):
            result["errors"] = error_cases(rank, world)
        if "gpt" in payload:
            result["gpt"] = gpt_gradients(payload["gpt"], rank, world)
        if "memory" in payload:
            result["memory"] = memory_peaks(payload["memory"], rank, world)
        if "trainer" in payload:
            result["trainer"] = trainer_run(payload["trainer"], rank, world)
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
