"""A compact decoder-only transformer over bytes (a vocabulary of 256, so no tokenizer).

Pre-norm blocks of causal self-attention (PyTorch's fused `scaled_dot_product_attention`) and
a GELU MLP, learned positions, and an output head tied to the byte embedding. No dropout: runs
are deterministic for a seed, which is what makes resumed runs match uninterrupted ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from trainport.recipes.lm.config import LMConfig

VOCAB = 256


class CausalSelfAttention(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.n_heads, width // self.n_heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        y = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.proj(y.transpose(1, 2).contiguous().view(batch, length, width))
        return out


class Block(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attention = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.expand = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.contract = nn.Linear(4 * config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        out: torch.Tensor = x + self.contract(functional.gelu(self.expand(self.norm2(x))))
        return out


class ByteLM(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.context = config.context
        self.embed = nn.Embedding(VOCAB, config.d_model)
        self.position = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, VOCAB, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(_init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layers)
        for block in self.blocks:
            assert isinstance(block, Block)
            nn.init.normal_(block.attention.proj.weight, std=residual_std)
            nn.init.normal_(block.contract.weight, std=residual_std)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits `(batch, length, 256)`; with `targets`, the mean cross-entropy instead."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        if targets is None:
            return logits
        return functional.cross_entropy(logits.float().view(-1, VOCAB), targets.reshape(-1))

    @torch.no_grad()
    def generate(
        self, prompt: bytes, length: int, *, temperature: float, generator: torch.Generator
    ) -> bytes:
        """`length` bytes sampled after `prompt` (a newline when empty)."""
        device = self.embed.weight.device
        tokens = torch.tensor(list(prompt or b"\n"), dtype=torch.long, device=device)[None]
        for _ in range(length):
            logits = self(tokens[:, -self.context :])[:, -1, :].float()
            probabilities = torch.softmax(logits / max(temperature, 1e-4), dim=-1)
            choice = torch.multinomial(probabilities.cpu(), 1, generator=generator)
            tokens = torch.cat([tokens, choice.to(device)], dim=1)
        return bytes(tokens[0, len(prompt or b"\n") :].tolist())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def parameter_count(model: nn.Module, *, exclude_positions: bool = False) -> int:
    """Distinct parameters (the tied head counted once)."""
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    if exclude_positions and isinstance(model, ByteLM):
        total -= model.position.weight.numel()
    return total


def flops_per_token(model: ByteLM, config: LMConfig) -> float:
    """Training FLOPs per token: 6N for the weights (the tied head included) plus the
    attention scores and values, 12 * layers * d_model * context (PaLM, appendix B)."""
    weights = parameter_count(model, exclude_positions=True)
    return 6.0 * weights + 12.0 * config.n_layers * config.d_model * config.context


PEAK_BF16_FLOPS = (  # dense, per GPU; the first name contained in the device name wins
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("4090", 165e12),
)


def peak_flops(device_name: str, override_tflops: float = 0.0) -> float | None:
    if override_tflops > 0:
        return override_tflops * 1e12
    for name, flops in PEAK_BF16_FLOPS:
        if name in device_name:
            return flops
    return None
