"""The Wave-Native GPT and its classic twin: embedding -> blocks -> collapse head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..card import ensure_card
from ..checkpoint import check_weights_header, read_config, read_weights, resolve_checkpoint, save_model
from ..config import WaveGPTConfig
from ..hub import push
from ..sampling import SamplingSettings, sample_steps
from .cache import DecodeCache, LayerCache, MixerWeights
from .embedding import ClassicEmbedding, TableEmbedding, WavePacketEmbedding
from .mixers import build_mixer
from .mlp import ResonanceMLP

# The parameters that describe waves rather than mix features: the packet's frequencies,
# phases and amplitudes, positional rates, the wave share, and interference attention's phase
# offsets and temperatures (the optimizer can give them their own learning rate and decay).
WAVE_PARAMETERS = ("frequencies", "phases", "amplitudes", "position_rate", "wave_ratio", "q_phase", "k_phase",
                   "log_temperature")


def is_wave_parameter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in WAVE_PARAMETERS


class Block(nn.Module):
    """Pre-norm residual block: x + mix(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = build_mixer(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = ResonanceMLP(config)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, MixerWeights | None]:
        mixed, weights = self.attn(self.ln1(x), start_pos, cache, need_weights)
        x = x + mixed
        return x + self.mlp(self.ln2(x)), weights


class CollapseHead(nn.Module):
    """LayerNorm, then a projection of the continuous state onto the vocabulary: the wave
    'collapses' into one logit per token."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model) if config.head_norm else nn.Identity()
        self.proj = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class WaveGPT(nn.Module):
    """`model(idx, targets)` returns `(logits, loss)`; loss is mean cross-entropy (nats/token).

    `model(idx, weights_of=layer)` returns `(logits, loss, MixerWeights)`: that layer's mixer
    weights for this call, the one source of attention weights (see `model.attention`)."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        self.config = config
        wave = config.model_type == "wave"
        if wave and config.embedding == "table":
            self.embedding = TableEmbedding(config)
        else:
            self.embedding = WavePacketEmbedding(config) if wave else ClassicEmbedding(config)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.head = CollapseHead(config)
        self.apply(self._init_weights)
        if not wave:  # nanoGPT ties the output projection to the token embedding
            self.head.proj.weight = self.embedding.token.weight
        elif config.tie_head:  # the collapse head reads out through the bootstrap table
            self.head.proj.weight = self.embedding.bootstrap.weight
        # GPT-2's scaled init of the projections that write into the residual stream.
        for name, p in self.named_parameters():
            if name.endswith(("attn.out.weight", "mlp.fc2.weight")):
                nn.init.normal_(p, std=0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def tied_weight_names(self) -> list[str]:
        """State-dict keys that alias another tensor (saved once, under the other name)."""
        tied = self.config.model_type == "classic" or self.config.tie_head
        return ["head.proj.weight"] if tied else []

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied tensors are counted once

    def set_attention_impl(self, impl: str) -> None:
        """"fast" (fused / chunked, the vocabulary-table embedding) or "reference" (the naive forms)."""
        self.embedding.impl = impl
        for block in self.blocks:
            block.attn.impl = impl

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: DecodeCache | None = None,
        last_only: bool = False,
        weights_of: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, MixerWeights]:
        start = cache.pos if cache is not None else 0
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"Sequence of {start + idx.shape[1]} tokens exceeds block_size {self.config.block_size}."
            )
        x = self.drop(self.embedding(idx, start))
        n = len(self.blocks)
        if weights_of is not None and not -n <= weights_of < n:
            raise ValueError(f"weights_of must be a layer from {-n} to {n - 1}, not {weights_of}.")
        wanted = None if weights_of is None else weights_of % n
        weights = None
        for i, block in enumerate(self.blocks):
            x, w = block(x, start, cache.layers[i] if cache is not None else None, i == wanted)
            weights = w if i == wanted else weights
        if cache is not None:
            cache.pos += idx.shape[1]
        if last_only:
            x = x[:, -1:]
        logits = self.head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1)
        return (logits, loss) if weights_of is None else (logits, loss, weights)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        generator: torch.Generator | None = None,
        **settings: Any,
    ) -> torch.Tensor:
        """Append `max_new_tokens` sampled tokens to idx (B, T) and return the whole sequence
        (nanoGPT's signature; further sampling fields, e.g. top_p or use_cache, as keywords of
        `wavegpt.sampling.SamplingSettings`)."""
        chosen = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, **settings)
        new = [step.token for step in sample_steps(self, idx, chosen, generator)]
        return torch.cat([idx, *(t[:, None] for t in new)], dim=1)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None, tokenizer=None,
                        push_to_hub: bool | str = False, repo_id: str | None = None, token: str | None = None,
                        private: bool | None = None, commit_message: str | None = None) -> str | None:
        """Write the model folder (config.json, model.safetensors; with a WaveTokenizer also its
        tokenizer.json, tokenizer_config.json and generation_config.json). With `push_to_hub`
        (True, or the repo id itself) upload the folder to the Hub; returns the commit URL then."""
        save_model(self, folder, dtype=dtype, tokenizer=tokenizer)
        if not push_to_hub:
            return None
        repo = push_to_hub if isinstance(push_to_hub, str) else (repo_id or Path(folder).resolve().name)
        ensure_card(folder, repo_id=repo)
        return push(folder, repo, token=token, private=private, commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> WaveGPT:
        """A local model (or run) folder, or a Hub repo id such as "org/name" (downloaded once, then
        read from the Hub cache; HF_HUB_OFFLINE=1 uses only the cache)."""
        return cls.from_resolved(resolve_checkpoint(folder), map_location)

    @classmethod
    def from_resolved(cls, folder: Path, map_location: str | torch.device = "cpu") -> WaveGPT:
        """from_pretrained of a folder `checkpoint.resolve_checkpoint` already found (resolved once per load)."""
        config = read_config(folder)
        check_weights_header(folder, config)  # a config.json that disagrees with the weights allocates nothing
        model = cls(config)
        expected = model.state_dict()
        for name in model.tied_weight_names:
            expected.pop(name)
        model.load_state_dict(read_weights(folder, expected, map_location), strict=False)
        return model.to(map_location)
