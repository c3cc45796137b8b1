"""minGPT's 'gpt-mini' (6 layers, 6 heads, 192 wide; karpathy/minGPT's model code) on
character tokens: forward and training step, a batch of sequences of 64 tokens.

The model is minGPT's, written once for ember and torch (``lib``): causal self-attention
with the ``tril`` mask buffer, ``masked_fill``, softmax, GELU in its tanh form, LayerNorm,
tied nothing; the head returns logits flattened to (batch * 64, vocab) so that the shared
training step's ``cross_entropy(model(x), y)`` is minGPT's loss.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.harness import Workload
from benchmarks.workloads.common import parse_count
from benchmarks.workloads.models import ModelSpec, model_workloads

SIZES = ["8"]
QUICK_SIZES = ["1"]
VOCAB, BLOCK, LAYERS, HEADS, WIDTH = 65, 64, 6, 6, 192


def workloads(sizes: list[str], device: str = "cpu") -> list[Workload]:
    return [w for text in sizes for w in model_workloads(SPEC, parse_count(text), device)]


def make_gpt(lib: Any) -> Any:
    """minGPT's GPT in PyTorch's words, for ``lib`` = ember or torch."""
    nn, F = lib.nn, lib.nn.functional

    class NewGELU(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1.0 + lib.tanh(math.sqrt(2.0 / math.pi)
                                             * (x + 0.044715 * lib.pow(x, 3.0))))

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
            self.c_proj = nn.Linear(WIDTH, WIDTH)
            self.register_buffer("bias", lib.tril(lib.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(WIDTH, dim=2)
            k = k.view(B, T, HEADS, C // HEADS).transpose(1, 2)
            q = q.view(B, T, HEADS, C // HEADS).transpose(1, 2)
            v = v.view(B, T, HEADS, C // HEADS).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(WIDTH)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(WIDTH)
            self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
            self.c_proj = nn.Linear(4 * WIDTH, WIDTH)
            self.act = NewGELU()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(self.act(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, WIDTH)
            self.wpe = nn.Embedding(BLOCK, WIDTH)
            self.h = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln_f = nn.LayerNorm(WIDTH)
            self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)

        def forward(self, idx):
            b, t = idx.size()
            pos = lib.arange(0, t, dtype=lib.long, device=idx.device).unsqueeze(0)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return logits.view(-1, logits.size(-1))

    return GPT()


def make_batch(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    tokens = rng.integers(0, VOCAB, (batch, BLOCK + 1)).astype(np.int64)
    return tokens[:, :-1].copy(), tokens[:, 1:].reshape(-1).copy()


def forward_gemms(batch: int) -> list[tuple[int, int, int]]:
    """Per layer: qkv, the two attention products per head, the projection, the MLP;
    then the head."""
    m, hd = batch * BLOCK, WIDTH // HEADS
    layer = [(m, WIDTH, 3 * WIDTH)] + [(BLOCK, hd, BLOCK), (BLOCK, BLOCK, hd)] * (batch * HEADS) \
        + [(m, WIDTH, WIDTH), (m, WIDTH, 4 * WIDTH), (m, 4 * WIDTH, WIDTH)]
    return layer * LAYERS + [(m, WIDTH, VOCAB)]


SPEC = ModelSpec("gpt", "minGPT gpt-mini", make_gpt, (BLOCK,), VOCAB, forward_gemms, None,
                 make_batch=make_batch)
