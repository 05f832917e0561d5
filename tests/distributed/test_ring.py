"""Ring attention and context-parallel training on gloo CPU processes, in float64.

Each launch starts W worker processes (``ring_worker.py``) that join one gloo group and run
many cases, so the process start-up is paid once per world size. The oracle runs here, in
one process: ``attnkit.attention(backend="reference")`` on the full tensors, a GPT trained
without any sharding, and a layout built from ``torch.chunk`` (not from the code under test).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import attnkit
from attnkit import masks
from attnkit.distributed import ring_schedule, segments, shard_positions
from attnkit.distributed.ring import backward_chunk, ring_pieces
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.train.trainer import TrainConfig, Trainer

WORKER = Path(__file__).with_name("ring_worker.py")
_spec = importlib.util.spec_from_file_location("ring_worker_for_tests", WORKER)
ring_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ring_worker)

RTOL = 1e-10
LAYOUTS = ("contiguous", "zigzag")


# --- launching ------------------------------------------------------------------------------

def launch(world: int, payload: dict, folder: Path, limit_s: float = 240.0):
    """Run ``world`` workers; returns (exit codes, stderr texts, seconds, results or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload_path = folder / "payload.pt"
    torch.save(payload, payload_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs, logs = [], []
    start = time.monotonic()
    for rank in range(world):
        log = open(folder / f"rank{rank}.log", "w+")  # noqa: SIM115 (closed below)
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(world), str(folder / "store"),
             str(payload_path), str(folder)], stdout=log, stderr=subprocess.STDOUT, env=env))
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=max(1.0, limit_s - (time.monotonic() - start))))
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        codes = [proc.returncode for proc in procs]
    elapsed = time.monotonic() - start
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    results = None
    if all(code == 0 for code in codes):
        results = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(world)]
    return codes, texts, elapsed, results


# --- the oracle's own layout -----------------------------------------------------------------

def positions(seq_len: int, world: int, rank: int, layout: str) -> torch.Tensor:
    index = torch.arange(seq_len)
    if layout == "contiguous":
        return index.chunk(world)[rank]
    chunks = index.chunk(2 * world)
    return torch.cat([chunks[rank], chunks[2 * world - 1 - rank]])


def gather(shards: list[torch.Tensor], layout: str, dim: int = 2) -> torch.Tensor:
    world = len(shards)
    seq_len = shards[0].shape[dim] * world
    shape = list(shards[0].shape)
    shape[dim] = seq_len
    full = shards[0].new_zeros(shape)
    for rank, piece in enumerate(shards):
        full.index_copy_(dim, positions(seq_len, world, rank, layout), piece)
    return full


def test_oracle_layout_is_the_documented_one():
    assert positions(8, 2, 0, "zigzag").tolist() == [0, 1, 6, 7]
    assert positions(8, 2, 1, "zigzag").tolist() == [2, 3, 4, 5]
    for world, layout in ((2, "zigzag"), (4, "zigzag"), (4, "contiguous")):
        for rank in range(world):
            assert torch.equal(shard_positions(48, world, rank, layout),
                               positions(48, world, rank, layout))


# --- the exact cases ----------------------------------------------------------------------------

def _cases(world: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    L, B, D, Dv = 12 * world, 2, 8, 5
    doc_ids = torch.cat([torch.zeros(5), torch.ones(L // 2), torch.full((L - 5 - L // 2,), 2)]
                        ).long()
    doc_ids = torch.stack([doc_ids, doc_ids.flip(0)])  # (B, L), another split per row
    kinds = {
        "none": (False, None),
        "causal": (True, None),
        "window_causal": (False, ("window", 5, True)),
        "window_bidirectional": (False, ("window", 4, False)),
        "document": (False, ("document", doc_ids)),
        "document_causal": (True, ("document", doc_ids)),
        "padding_empty_row": (True, ("padding", torch.tensor([L, 0]))),
        "not_window": (True, ("not", ("window", 7, True))),
    }
    cases = []
    for layout in LAYOUTS:
        for i, (name, (causal, mask)) in enumerate(kinds.items()):
            kv_heads = 4 if name == "causal" and layout == "zigzag" else 2  # GQA but one
            small = i % 2 == 0
            cases.append({
                "id": f"W{world}-{layout}-{name}-Hkv{kv_heads}", "layout": layout,
                "causal": causal, "mask": mask, "block_q": 4 if small else 256,
                "block_k": 5 if small else 256,
                # Pieces: several per run, some shorter than the rest, or one per run.
                "chunk": 4 if small else (5 if i % 4 == 1 else 1024),
                "q": torch.randn(B, 4, L, D, generator=gen, dtype=torch.float64),
                "k": torch.randn(B, kv_heads, L, D, generator=gen, dtype=torch.float64),
                "v": torch.randn(B, kv_heads, L, Dv, generator=gen, dtype=torch.float64),
                "grad": torch.randn(B, 4, L, Dv, generator=gen, dtype=torch.float64)})
    return cases


CASES = {2: _cases(2, 0), 4: _cases(4, 1)}

GPT_CONFIG = dict(vocab_size=29, context_len=32, num_layers=2, num_heads=4, num_kv_heads=2,
                  d_model=16, positional="rotary")
TRAIN_CONFIG = dict(max_steps=4, lr=3e-3, warmup_steps=0, schedule="constant", amp="off",
                    fused_optimizer=False, log_every=1, progress=False, grad_clip=0.5)
TRAIN_MODEL = dict(GPT_CONFIG, positional="learned", num_kv_heads=None)


def _tokens(shape, seed):
    return torch.randint(0, GPT_CONFIG["vocab_size"], shape,
                         generator=torch.Generator().manual_seed(seed))


def _payload(world: int) -> dict:
    payload = {"scenario": "exact", "timeout_s": 60, "cases": CASES[world], "errors": world == 2,
               "gpt": {"config": GPT_CONFIG, "layout": "zigzag" if world == 2 else "contiguous",
                       "tokens": _tokens((2, 8 * world + 1), world)}}
    # W = 2: context parallelism over both ranks; W = 4: 2 data-parallel replicas x 2.
    if world == 2:
        payload["memory"] = MEMORY
    payload["trainer"] = {"config": TRAIN_MODEL, "train": TRAIN_CONFIG, "dp": world // 2,
                          "tokens": _tokens((TRAIN_CONFIG["max_steps"], 2, 17), 7)}
    return payload


# Both shards shorter than 32 chunks: the same backward pieces (backward_chunk) at both.
MEMORY = {"heads": 2, "head_dim": 32, "chunk": 64, "shard_lengths": [256, 1024]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """world size -> every rank's results (each launch once per module)."""
    done = {}

    def get(world: int):
        if world not in done:
            folder = tmp_path_factory.mktemp(f"ring{world}")
            codes, texts, _, results = launch(world, _payload(world), folder)
            assert results is not None, f"workers exited {codes}:\n" + "\n".join(texts)
            done[world] = results
        return done[world]

    return get


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-300))


def _oracle(case: dict):
    q, k, v = (case[n].clone().requires_grad_(True) for n in ("q", "k", "v"))
    mask = ring_worker.build_mask(case["mask"])
    out, _ = attnkit.attention(q, k, v, mask=mask, causal=case["causal"] or None,
                               backend="reference")
    out.backward(case["grad"])
    # The log-sum-exp of every row, from the dense mask and logits.
    L = q.shape[2]
    allowed = torch.ones(1, 1, L, L, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & masks.materialize(mask, q.shape[0], q.shape[1], L, L)
    if case["causal"]:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool).tril()
    group = q.shape[1] // k.shape[1]
    logits = q.detach() @ k.detach().repeat_interleave(group, 1).transpose(-2, -1) \
        / math.sqrt(q.shape[-1])
    lse = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    return {"out": out.detach(), "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}


def _exact_params():
    return [pytest.param(world, i, id=case["id"],
                         marks=[pytest.mark.slow] if world == 4 and i % 4 else [])
            for world in (2, 4) for i, case in enumerate(CASES[world])]


@pytest.mark.parametrize("world, index", _exact_params())
def test_ring_equals_one_process_attention(runs, world, index):
    case = CASES[world][index]
    results = runs(world)
    want = _oracle(case)
    for name in ("out", "dq", "dk", "dv"):
        got = gather([r["exact"][index][name] for r in results], case["layout"])
        assert _rel(got, want[name]) <= RTOL, (name, _rel(got, want[name]))
    lse = gather([r["exact"][index]["lse"] for r in results], case["layout"])
    empty = want["lse"] == float("-inf")
    assert torch.equal(lse == float("-inf"), empty)
    assert _rel(lse[~empty], want["lse"][~empty]) <= RTOL
    if case["mask"] is not None and case["mask"][0] == "padding":
        assert empty.any(), "this case must exercise rows with nothing to attend to"


@pytest.mark.parametrize("world", [2, 4])
def test_ring_sends_each_shard_once_per_pass_in_packed_pieces(runs, world):
    """Bytes and messages per rank: each K|V piece is one message per hop and goes
    W - 1 hops per pass; in the backward each dK|dV sum is one message per hop and goes
    W - 1 hops (the owner's own part never travels). That is no more messages than
    unpacked K and V pieces of ``chunk`` (two per hop) with a dK and a dV message on each
    of W hops would need."""
    for index, case in enumerate(CASES[world]):
        L = case["q"].shape[2]
        n = L // world
        pieces = len(ring_pieces(L, world, case["layout"], chunk=case["chunk"]))
        backward = len(ring_pieces(L, world, case["layout"],
                                   chunk=backward_chunk(n, case["chunk"])))
        kv_bytes = (case["k"].numel() + case["v"].numel()) // world * 8  # float64 shards
        for rank, result in enumerate(runs(world)):
            stats = result["exact"][index]["stats"]
            assert (stats["pieces"], stats["pieces_backward"]) == (pieces, backward)
            assert stats["messages_forward"] == (world - 1) * pieces, (rank, case["id"])
            assert stats["messages_backward"] == 2 * (world - 1) * backward
            assert stats["messages_backward"] <= 2 * (world - 1) * pieces + 2 * world * pieces
            assert stats["bytes_sent_forward"] == (world - 1) * kv_bytes
            assert stats["bytes_sent_backward"] == 2 * (world - 1) * kv_bytes


def test_backward_pieces_are_halved_on_short_shards():
    assert backward_chunk(4096, 128) == 128
    assert backward_chunk(4095, 128) == 64
    assert backward_chunk(1024, 128) == 64
    assert backward_chunk(12, 1) == 1
    assert backward_chunk(12, 5) == 2
    with pytest.raises(ValueError, match="chunk"):
        backward_chunk(12, 0)


def test_shard_unshard_round_trip(runs):
    for world in (2, 4):
        results = runs(world)
        full = torch.arange(2 * 3 * 8 * world).view(2, 3, 8 * world)
        for layout in LAYOUTS:
            for rank, result in enumerate(results):
                trip = result["round_trips"][layout]
                assert torch.equal(trip["shard"], full[..., positions(8 * world, world, rank,
                                                                      layout)])
                assert torch.equal(trip["back"], full)
            assert torch.equal(results[0]["round_trips"][layout]["flags_back"],
                               results[1]["round_trips"][layout]["flags_back"])


def test_ring_memory_grows_only_by_output_and_gradients(runs):
    """Issue 16's memory goal, structurally: a shard four times as long adds what
    the output and the gradients of q, k, v need (four shard-sized float32 tensors, plus
    the row statistics), and nothing shard-sized for transfers or accumulators, which
    travel in pieces of at most ``chunk`` positions."""
    small, large = MEMORY["shard_lengths"]
    per_tensor = (large - small) * MEMORY["heads"] * MEMORY["head_dim"] * 4
    for rank, result in enumerate(runs(2)):
        growth = result["memory"][large] - result["memory"][small]
        assert 3.9 * per_tensor <= growth <= 4.3 * per_tensor, (rank, growth / per_tensor)


# --- refusals: every rank raises, naming the argument ------------------------------------------

@pytest.mark.parametrize("case, kind, words", [
    ("uneven", "ValueError", ["q:", "uneven shard lengths", "[6, 4]"]),
    ("layouts", "ValueError", ["layout:", "'zigzag'", "'contiguous'"]),
    ("odd_zigzag", "ValueError", ["q:", "zigzag", "odd"]),
    ("prefix_lm", "TypeError", ["mask:", "PrefixLM"]),
    ("causal_differs", "ValueError", ["causal:", "disagree"]),
    ("document_ids_too_short", "ValueError", ["mask:", "full sequence"]),
    ("shard_uneven", "ValueError", ["x:", "length 5"]),
    ("unshard_layouts", "ValueError", ["layout:"]),
    ("unshard_shapes", "ValueError", ["x:", "differ"]),
])
def test_bad_calls_fail_on_every_rank(runs, case, kind, words):
    for rank, result in enumerate(runs(2)):
        error = result["errors"][case]
        assert error is not None and error[0] == kind, (rank, error)
        assert all(word in error[1] for word in words), (rank, error)


def test_one_rank_refusing_makes_the_others_raise(runs):
    local, peer = (r["errors"]["dense_mask_on_one_rank"] for r in reversed(runs(2)))
    assert local[0] == "TypeError" and local[1].startswith("mask:")  # rank 1, its own error
    assert peer[0] == "ValueError" and "rank(s) [1] refused" in peer[1]  # rank 0


def test_group_still_works_after_refusals(runs):
    torch.manual_seed(0)  # what every worker used: the same (1, 2, 4, 4) shard on each rank
    x = torch.randn(1, 2, 8, 4, dtype=torch.float64)[:, :, :4]
    full = gather([x, x], "zigzag")
    want, _ = attnkit.attention(full, full, full, causal=True, backend="reference")
    got = gather([r["errors"]["after"] for r in runs(2)], "zigzag")
    assert _rel(got, want) <= RTOL


def test_a_rank_dying_mid_ring_ends_every_rank(tmp_path):
    codes, texts, elapsed, _ = launch(3, {"scenario": "fail", "timeout_s": 20}, tmp_path,
                                      limit_s=90)
    assert all(code not in (0, None) for code in codes), (codes, texts)
    assert elapsed < 60, f"the ranks took {elapsed:.0f} s to give up"
    assert "fails on purpose" in texts[1]
    for rank in (0, 2):
        assert "Error" in texts[rank], texts[rank]


# --- the schedule: blocks a mask rules out are never computed ----------------------------------

def test_causal_contiguous_skips_future_ranks_and_zigzag_balances():
    L, W = 64, 4
    contiguous = [ring_schedule(L, W, r, "contiguous", causal=True, block_q=4, block_k=4)
                  for r in range(W)]
    # Rank r computes blocks from ranks 0..r only: steps 0..r.
    for rank, schedule in enumerate(contiguous):
        assert [len(blocks) > 0 for blocks in schedule] == [s <= rank for s in range(W)]
    zigzag = [ring_schedule(L, W, r, "zigzag", causal=True, block_q=4, block_k=4)
              for r in range(W)]
    work = [sum(b.logits for blocks in s for b in blocks) for s in zigzag]
    unbalanced = [sum(b.logits for blocks in s for b in blocks) for s in contiguous]
    assert max(work) <= 1.1 * min(work), work
    assert max(unbalanced) > 3 * min(unbalanced), unbalanced
    # Counted work equals the tiles of a one-process tiled call (4 x 4 tiles, no skipping
    # inside a tile): the causal triangle plus the diagonal tiles' upper halves.
    tiles = L // 4
    assert sum(work) == 16 * tiles * (tiles + 1) // 2


def test_window_and_document_skip_whole_blocks():
    L, W = 64, 4
    window = [ring_schedule(L, W, r, "contiguous", mask=masks.sliding_window(4))
              for r in range(W)]
    # A 4-wide causal window reaches one rank back at most.
    for schedule in window:
        assert [len(blocks) > 0 for blocks in schedule][2:] == [False, False]
    ids = torch.arange(L) // (L // W)  # one document per contiguous shard
    document = ring_schedule(L, W, 1, "contiguous", mask=masks.document(ids))
    assert [len(blocks) for blocks in document] == [1, 0, 0, 0]


def test_segments_refuse_uneven_lengths():
    with pytest.raises(ValueError, match="seq_len"):
        segments(10, 3, 0, "contiguous")
    with pytest.raises(ValueError, match="layout"):
        segments(8, 2, 0, "striped")


# --- context-parallel GPT -------------------------------------------------------------------

def test_context_parallel_gpt_gradients_match_one_process(runs):
    for world in (2, 4):
        result = runs(world)[0]["gpt"]
        torch.manual_seed(0)
        model = GPT(GPTConfig(**GPT_CONFIG)).double()
        tokens = _payload(world)["gpt"]["tokens"]
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        assert _rel(result["loss"], loss.detach()) <= RTOL
        for name, param in model.named_parameters():
            assert _rel(result["grads"][name], param.grad) <= RTOL, name


@pytest.fixture(scope="module")
def one_process_training():
    """The Trainer's loss curve and final weights on one process, full batches."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TRAIN_MODEL)).double()
    data = _payload(2)["trainer"]["tokens"]

    def loss_fn(m, batch):
        logits = m(batch[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(),
                               reduction="sum"), batch[:, 1:].numel()

    trainer = Trainer(model, TrainConfig(**TRAIN_CONFIG),
                      batch_fn=lambda index, rank, world: data[index], loss_fn=loss_fn)
    trainer.fit()
    return [r["loss"] for r in trainer.history if r.get("event") == "train"], model


@pytest.mark.parametrize("world", [2, 4], ids=["cp2", "dp2xcp2"])
def test_trainer_context_parallel_follows_one_process_loss_curve(runs, one_process_training,
                                                                 world):
    result = runs(world)[0]["trainer"]
    want, model = one_process_training
    assert len(want) == TRAIN_CONFIG["max_steps"] == len(result["losses"])
    assert want[-1] < want[0]  # it trained
    for got, expected in zip(result["losses"], want, strict=True):
        assert abs(got - expected) <= 1e-9 * abs(expected), (result["losses"], want)
    for name, value in model.state_dict().items():
        # k_proj.bias gets no gradient (softmax ignores a shift shared by all keys): both
        # runs hold rounding noise there, hence the small absolute term.
        assert torch.allclose(result["state"][name], value, rtol=1e-8, atol=1e-12), name
