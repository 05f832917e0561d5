"""ContextParallelGPT runs attention-only GPTs (``mlp=False``, blocks without ``ffn``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from attnkit.distributed import ContextParallelGPT, shard_batch
    from attnkit.models.gpt import GPT, GPTConfig

    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0,
                            world_size=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=29, context_len=32, num_layers=2, num_heads=4,
                          d_model=16, mlp=False)).double().eval()
    tokens = torch.randint(0, 29, (2, 17))
    idx, _ = shard_batch(tokens)
    want = model(tokens[:, :-1])
    got = ContextParallelGPT(model, layout="contiguous")(idx)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    dist.destroy_process_group()
    print("ok")
""")


def test_context_parallel_gpt_runs_an_attention_only_model(tmp_path):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
