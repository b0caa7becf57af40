"""Sampling, with incremental decoding, written once for every model variant.

How the context slides past `block_size`: the model sees a window of at most block_size
tokens whose first token is position 0. When a new token would make the window longer
than block_size, the window restarts from its newest `block_size // 2` tokens (the new
token included). The cached path then refills its cache with one prefill pass over that
window, and the uncached path recomputes the same window, so both see identical
contexts and produce the same tokens. Between slides a cached step costs one token's
work; a slide costs one prefill of block_size/2 tokens, once every block_size/2 tokens.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .model.gpt import DecodeCache, WaveGPT


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
def sample_tokens(
    model: WaveGPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | list[torch.Generator] | None = None,
    repetition_penalty: float = 1.0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (token (B,), probabilities (B, V)) for each new token of the prompt idx (B, T).

    repetition_penalty > 1 makes every token already in a row (prompt or generated, the whole
    text, not only the window) less likely; 1 turns it off."""
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or more, not {temperature}.")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be more than 0, not {repetition_penalty}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], not {top_p}.")
    if idx.shape[1] == 0:
        raise ValueError("The prompt must hold at least one token.")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    window = idx[:, -block:]
    cache = None
    seen = None
    if repetition_penalty != 1.0:
        seen = torch.zeros(idx.shape[0], model.config.vocab_size, dtype=torch.bool, device=idx.device)
        seen.scatter_(1, idx, True)
    try:
        for step in range(max_new_tokens):
            if use_cache:
                if cache is None:  # prefill the (new) window in one pass
                    cache = DecodeCache(model.config.n_layers)
                    logits, _ = model(window, cache=cache, last_only=True)
                else:
                    logits, _ = model(window[:, -1:], cache=cache, last_only=True)
            else:
                logits, _ = model(window, last_only=True)
            logits = logits[:, -1]
            if seen is not None:
                logits = penalize_repeats(logits, seen, repetition_penalty)
            token, probs = next_token(logits, temperature, top_k, top_p, generator)
            if seen is not None:
                seen.scatter_(1, token[:, None], True)
            yield token, probs
            if step + 1 == max_new_tokens:
                break
            window = torch.cat([window, token[:, None]], dim=1)
            if window.shape[1] > block:
                window = window[:, -(block // 2):]
                cache = None
    finally:
        model.train(was_training)
