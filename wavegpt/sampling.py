"""Sampling, with incremental decoding, written once for every model variant.

`SamplingSettings` is the one description of how to sample (length, temperature, top-k,
top-p, repetition penalty, seed, samples, stops, cache), checked once when it is made; the
Python API, the commands (`wavegpt.cli.add_sampling_arguments`), the app and the animation
all build one and pass it down. `sample_steps` is the one decoding loop: each step reports
the sampled tokens, the distribution they came from, the window the model read, whether the
window slid before it, and (when asked) one layer's mixer weights.

How the context slides past `block_size`: the model sees a window of at most block_size
tokens whose first token is position 0. When a new token would make the window longer
than block_size, the window restarts from its newest `block_size // 2` tokens (the new
token included). The cached path then refills its cache with one prefill pass over that
window, and the uncached path recomputes the same window, so both see identical
contexts and produce the same tokens. Between slides a cached step costs one token's
work; a slide costs one prefill of block_size/2 tokens, once every block_size/2 tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .model.cache import DecodeCache, MixerWeights

# The model is any WaveGPT-like module (model(idx, cache=, last_only=, weights_of=), model.config): this
# module sits below model/gpt.py, whose generate() runs sample_steps, so it names no model class.
Model = torch.nn.Module

# The sampling defaults, here once: SamplingSettings', and the commands' and the app's, which also turn top-k
# on (it cuts the long tail of rare tokens that makes small models ramble); generation_config.json says the same.
DEFAULT_MAX_NEW_TOKENS = 200
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 50
MAX_NEW_TOKENS = 10_000  # per sample; a bigger request is almost surely a typo (and hours on a CPU)
MAX_SAMPLES = 64


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# A penalty divides (or multiplies) a logit: past these bounds the logits overflow to infinity, or the
# penalty is no penalty any more.
REPETITION_PENALTY_RANGE = (0.01, 100.0)
MAX_SAMPLING_SEED = 2**63 - 1 - 64  # sample i of a batch uses seed + i; torch takes 64-bit seeds


@dataclass(frozen=True, kw_only=True)
class SamplingSettings:
    """How to sample; every field is checked when the settings are made (one-sentence ValueError).

    top_k / top_p None turn them off; temperature 0 is greedy; repetition_penalty 1 is off;
    seed None draws a fresh seed when sampling starts. `replace(**changes)` gives checked copies.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    seed: int | None = None
    num_samples: int = 1
    stop_at_eot: bool = True
    stop: tuple[str, ...] = ()
    use_cache: bool = True

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, not {self.max_new_tokens}.")
        if not _is_real(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, not {self.temperature}.")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"top_k must be at least 1, not {self.top_k}.")
        if self.top_p is not None and (not _is_real(self.top_p) or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}.")
        if not _is_int(self.num_samples) or not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ValueError(f"num_samples must be between 1 and {MAX_SAMPLES}, not {self.num_samples}.")
        low, high = REPETITION_PENALTY_RANGE
        if not _is_real(self.repetition_penalty) or not low <= self.repetition_penalty <= high:
            raise ValueError(f"repetition_penalty must be a number from {low:g} to {high:g} (1 = off), not "
                             f"{self.repetition_penalty}.")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SAMPLING_SEED):
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SAMPLING_SEED}, not {self.seed!r}.")
        if isinstance(self.stop, str) or not isinstance(self.stop, Sequence) \
                or not all(isinstance(s, str) for s in self.stop):
            raise ValueError("stop must be a list of strings.")
        object.__setattr__(self, "stop", tuple(self.stop))
        for name in ("stop_at_eot", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}.")

    def replace(self, **changes: Any) -> SamplingSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, settings: SamplingSettings | None = None, max_new_tokens: int | None = None,
           **fields: Any) -> SamplingSettings:
        """`settings` with `fields` changed, or new settings from `fields` alone (max_new_tokens None: not given,
        the form the positional argument of the text functions takes)."""
        if max_new_tokens is not None:
            fields["max_new_tokens"] = max_new_tokens
        if settings is None:
            return cls(**fields)
        if not isinstance(settings, SamplingSettings):
            raise TypeError(f"settings must be SamplingSettings, not {type(settings).__name__}.")
        return settings.replace(**fields) if fields else settings


@dataclass
class SampleStep:
    """One step of decoding: what was sampled, from what, having read which window.

    `window` (B, T) holds the tokens the model read for this step (its newest is the token
    being read; the mixer weights, when asked for, cover exactly these positions); `slid` is
    True when the window restarted from its newest block_size // 2 tokens before this step.
    """

    token: torch.Tensor  # (B,)
    probs: torch.Tensor  # (B, V), the distribution the token was drawn from
    window: torch.Tensor  # (B, T)
    slid: bool = False
    weights: MixerWeights | None = None


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Scaled logits with everything outside top-k / the top-p nucleus set to -inf.

    The maximum is subtracted before scaling (softmax does not change), so a tiny positive
    temperature cannot overflow the logits to inf and the probabilities to NaN.
    """
    logits = logits.float()
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logit of every token already in a row's text (seen, a (B, V)
    mask) is divided by `penalty` when positive and multiplied by it when negative, so a penalty
    above 1 always makes a repeat less likely."""
    logits = logits.float()
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | list[torch.Generator] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from last-position logits (B, V); temperature 0 is greedy.

    `generator` may be one per row: row i then draws exactly what it would draw alone with its
    generator, so a batch of samples reproduces the same samples drawn one at a time.
    Returns the tokens (B,) and the probabilities they were drawn from (B, V).
    """
    if temperature == 0:
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.argmax(dim=-1), probs
    probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
    if isinstance(generator, list):
        return torch.cat([torch.multinomial(probs[i : i + 1], 1, generator=g)[:, 0]
                          for i, g in enumerate(generator)]), probs
    return torch.multinomial(probs, 1, generator=generator)[:, 0], probs


@torch.no_grad()
def sample_steps(
    model: Model,
    idx: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | list[torch.Generator] | None = None,
    weights_of: int | None = None,
) -> Iterator[SampleStep]:
    """Yield a `SampleStep` for each new token of the prompt idx (B, T): the one decoding loop.

    `settings.max_new_tokens` steps at most (the seed and stops are the text layer's business:
    `generator` draws the tokens, one per row or one for all); `weights_of=layer` adds that
    layer's mixer weights to every step. repetition_penalty > 1 makes every token already in a
    row (prompt or generated, the whole text, not only the window) less likely."""
    if idx.shape[1] == 0:
        raise ValueError("The prompt must hold at least one token.")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    window = idx[:, -block:]
    cache = None
    slid = False
    seen = None
    penalty = settings.repetition_penalty
    if penalty != 1.0:
        seen = torch.zeros(idx.shape[0], model.config.vocab_size, dtype=torch.bool, device=idx.device)
        seen.scatter_(1, idx, True)
    try:
        for step in range(settings.max_new_tokens):
            if settings.use_cache:
                if cache is None:  # prefill the (new) window in one pass
                    cache = DecodeCache(model.config.n_layers)
                    out = model(window, cache=cache, last_only=True, weights_of=weights_of)
                else:
                    out = model(window[:, -1:], cache=cache, last_only=True, weights_of=weights_of)
            else:
                out = model(window, last_only=True, weights_of=weights_of)
            logits = out[0][:, -1]
            if seen is not None:
                logits = penalize_repeats(logits, seen, penalty)
            token, probs = next_token(logits, settings.temperature, settings.top_k, settings.top_p, generator)
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            yield SampleStep(token, probs, window, slid, out[2] if weights_of is not None else None)
            if step + 1 == settings.max_new_tokens:
                break
            window = torch.cat([window, token[:, None]], dim=1)
            slid = window.shape[1] > block
            if slid:
                window = window[:, -(block // 2):]
                cache = None
    finally:
        model.train(was_training)


def sample_tokens(
    model: Model,
    idx: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    settings: SamplingSettings | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    **fields: Any,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (token (B,), probabilities (B, V)) for each new token: `sample_steps` without the
    window and weights. Sampling fields (temperature, top_k, ...) as in SamplingSettings; the
    temperature defaults to 1 here, as in nanoGPT's generate."""
    if settings is None:
        fields.setdefault("temperature", 1.0)
    for step in sample_steps(model, idx, SamplingSettings.of(settings, max_new_tokens, **fields), generator):
        yield step.token, step.probs
