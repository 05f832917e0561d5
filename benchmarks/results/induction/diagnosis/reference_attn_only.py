"""An independent minimal attention-only transformer (plain PyTorch, none of attnkit's
modules) on the synthetic proxy of ``synthetic_detect.py``: the same batches, probes and
optimizer, so that a difference in behaviour points at attnkit's GPT rather than the task.

Model: token embedding, NUM_LAYERS pre-LayerNorm blocks ``x + W_O attn(LN(x))`` with causal
softmax attention (scale 1/sqrt(head dim)), rotary positions (base 10000, GPT-NeoX layout:
the two halves of each head's dimensions rotate together) or learned absolute positions,
final LayerNorm, output tied to the embedding. Weights from N(0, STD^2), output projections
N(0, STD^2 / (2 x layers)).

    python reference_attn_only.py STD LR STEPS POSITIONS [SEED]   # POSITIONS: rotary|learned
"""
import math
import sys

import torch
from synthetic_rotary_base import LENGTH, VOCAB, train
from torch import nn

D_MODEL, HEADS, NUM_LAYERS = 64, 2, 2


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (B, H, T, Dh)."""
    t, dh = x.shape[-2], x.shape[-1]
    freqs = 10000.0 ** (-torch.arange(0, dh, 2, dtype=torch.float32) / dh)  # (Dh/2,)
    angles = torch.arange(t, dtype=torch.float32)[:, None] * freqs[None, :]  # (T, Dh/2)
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (T, Dh)
    half = torch.cat([-x[..., dh // 2:], x[..., :dh // 2]], dim=-1)
    return x * cos + half * sin


class Block(nn.Module):
    def __init__(self, positions: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)
        self.positions = positions
        self.pattern: torch.Tensor | None = None  # (B, H, T, T) of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
        if self.positions == "rotary":
            q, k = rotate(q), rotate(k)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, T)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        self.pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
        mixed = (self.pattern @ v).transpose(1, 2).reshape(b, t, D_MODEL)
        return x + self.out(mixed)


class Reference(nn.Module):
    def __init__(self, positions: str, std: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.pos = nn.Embedding(LENGTH, D_MODEL) if positions == "learned" else None
        self.blocks = nn.ModuleList(Block(positions) for _ in range(NUM_LAYERS))
        self.norm = nn.LayerNorm(D_MODEL)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.normal_(block.out.weight, std=std / math.sqrt(2 * NUM_LAYERS))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        if self.pos is not None:
            x = x + self.pos.weight[:idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T  # (B, T, V)


def prefix_matching(model: Reference, probes: torch.Tensor, n: int) -> list[float]:
    """Mean attention of second-copy query t on key t - n + 1, per layer-1 head."""
    with torch.no_grad():
        model(probes)
    pattern = model.blocks[1].pattern  # (B, H, T, T); probes = [BOS, s, s], |s| = n
    rows = torch.arange(n + 1, 2 * n + 1)
    return pattern[:, :, rows, rows - n + 1].mean(dim=(0, 2)).tolist()


def previous_token(model: Reference, probes: torch.Tensor, layer: int) -> float:
    with torch.no_grad():
        model(probes)
    pattern = model.blocks[layer].pattern
    rows = torch.arange(1, probes.shape[1])
    return pattern[:, :, rows, rows - 1].mean(dim=(0, 2)).max().item()


def main(std: str, lr: str, steps: str, positions: str, seed: str = "0") -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(int(seed) + 100)
    torch.manual_seed(int(seed))
    model = Reference(positions, float(std))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=0.01)
    g = torch.Generator().manual_seed(12345)
    seq = torch.randint(4, VOCAB, (16, 25), generator=g)
    probes = torch.cat([torch.ones(16, 1, dtype=torch.long), seq, seq], dim=1)  # (16, 51)

    def report(step: int, loss: float, seconds: float) -> None:
        pm = prefix_matching(model, probes, 25)
        print(step, f"loss2nd {loss:.3f}", f"pm L1 {max(pm):.2f}",
              f"prevL0 {previous_token(model, probes, 0):.2f}",
              f"prevL1 {previous_token(model, probes, 1):.2f}", f"{seconds:.0f}s", flush=True)

    train(model, optimizer, generator, int(steps), 250, report)

if __name__ == "__main__":
    main(*sys.argv[1:])
