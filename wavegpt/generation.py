"""Text in, text out: load a checkpoint with its tokenizer and stream sampled text.

Everything here is a thin layer over `wavegpt.sampling.sample_tokens`, the one decoding
loop, so the CLI, the app and the animation sample identically. Decoding is incremental
(cached keys/values, or the constant-size recurrent state in linear mode) unless
`use_cache=False`, and both give the same tokens for the same seed.

How the context slides: the model sees at most `block_size` tokens. A longer prompt keeps
its last `block_size` tokens; when generation would overflow the window, the window
restarts from its newest `block_size // 2` tokens (see the module docstring of
`wavegpt.sampling` for the exact rule and its cost).

Text is decoded incrementally: byte-level BPE can split one UTF-8 character across
tokens, so a piece is only emitted once it no longer ends in a partial character (which
would decode as U+FFFD); concatenating the pieces gives exactly `decode(new_tokens)`.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import TOKENIZER_NAME, WEIGHTS_NAME, CheckpointError, load_model, resolve_checkpoint
from .model.gpt import WaveGPT
from .sampling import sample_tokens
from .tokenizer import WaveTokenizer

MAX_NEW_TOKENS = 10_000  # per sample; a bigger request is almost surely a typo (and hours on a CPU)
MAX_SAMPLES = 64
CHECKPOINT_ENV = "WAVEGPT_CHECKPOINT"  # where an installed (non-checkout) copy keeps its model
SAMPLE_SEPARATOR = "\n" + "-" * 40 + "\n"
NO_SHIPPED_CHECKPOINT = (
    "No trained checkpoint is shipped yet; pass --checkpoint FOLDER (a folder written by wavegpt-train)."
)


def shipped_folder() -> Path:
    """Where the shipped model lives: inside the installed package (a wheel carries `checkpoints/`
    as package data) or, in a checkout or editable install, `checkpoints/` at the repo root."""
    packaged = Path(__file__).resolve().parent / "checkpoints"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "checkpoints"


def default_checkpoint() -> Path | None:
    """The shipped model: $WAVEGPT_CHECKPOINT if set, else the shipped folder (see shipped_folder);
    None while no model.safetensors is there."""
    if os.environ.get(CHECKPOINT_ENV):  # set means meant: a mistyped path is an error, not a silent fallback
        given = os.environ[CHECKPOINT_ENV]
        try:
            resolved = resolve_checkpoint(given)
        except CheckpointError as e:
            raise CheckpointError(f"${CHECKPOINT_ENV} is set to {given!r}, which is not a usable checkpoint "
                                  f"({str(e).rstrip('.')}); fix or unset it.") from None
        if not (resolved / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"${CHECKPOINT_ENV} is set to {given!r}, which holds no {WEIGHTS_NAME}; fix or "
                                  f"unset it.")
        return resolved
    try:
        resolved = resolve_checkpoint(shipped_folder())
    except CheckpointError:
        return None
    return resolved if (resolved / WEIGHTS_NAME).is_file() else None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a one-sentence ValueError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Unknown device {device!r}; use cpu or cuda.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA GPU is available; use --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available here; use --device cpu.")
    return dev


def load_for_generation(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[WaveGPT, WaveTokenizer]:
    """Model (in eval mode, on `device`) and the tokenizer it was trained with."""
    dev = resolve_device(device)
    folder = resolve_checkpoint(checkpoint)
    # A training run keeps tokenizer.json both in its model folders and at its top.
    tok_path = next((p for p in (folder / TOKENIZER_NAME, Path(checkpoint) / TOKENIZER_NAME) if p.is_file()), None)
    if tok_path is None:
        raise CheckpointError(f"{folder} has no {TOKENIZER_NAME}, so its token ids cannot be turned into text.")
    model = load_model(folder, map_location=dev)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise CheckpointError(f"The weights in {folder} hold NaN or infinite values (the training run diverged).")
    try:
        tokenizer = WaveTokenizer.load(tok_path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    check_tokenizer_matches(tokenizer, model, tok_path, folder)
    return model.eval(), tokenizer


def check_tokenizer_matches(tokenizer: WaveTokenizer, model: WaveGPT, tok_path: Path, folder: Path) -> None:
    """The tokenizer the model was trained with, or a CheckpointError: the sizes must be equal, and a model
    that recorded its tokenizer's vocabulary hash (extra.tokenizer_vocab_sha256) must find the same one."""
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(
            f"{tok_path} has {tokenizer.vocab_size} tokens but the model in {folder} has "
            f"{model.config.vocab_size}; they do not belong together."
        )
    extra = model.config.extra if isinstance(model.config.extra, dict) else {}
    recorded = extra.get("tokenizer_vocab_sha256")
    if recorded and recorded != tokenizer.vocab_sha256:
        raise CheckpointError(f"{tok_path} is not the tokenizer the model in {folder} was trained with (its "
                              f"vocabulary differs); use the tokenizer.json saved with the model.")


def random_seed() -> int:
    """A fresh seed small enough to print and type back in with --seed."""
    return secrets.randbelow(2**31)


def check_sampling_args(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    num_samples: int,
    repetition_penalty: float = 1.0,
) -> None:
    """One-sentence ValueErrors for requests the sampler cannot or should not serve."""
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, not {max_new_tokens}.")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or more, not {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], not {top_p}.")
    if not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
        raise ValueError(f"num_samples must be between 1 and {MAX_SAMPLES}, not {num_samples}.")
    if not isinstance(repetition_penalty, (int, float)) or not 0 < repetition_penalty < math.inf:
        raise ValueError(f"repetition_penalty must be a number above 0 (1 = off), not {repetition_penalty}.")


def sampling_inputs(model: WaveGPT, tokenizer: WaveTokenizer, prompt: str, top_k: int | None,
                    seed: int) -> tuple[torch.Tensor, int | None, torch.Generator]:
    """The prompt ids, the clipped top-k and the seeded generator: everything that samples
    (generate.py, the app, the animation) starts here, so one seed gives one text."""
    device = next(model.parameters()).device
    idx = torch.tensor([encode_prompt(tokenizer, prompt)], dtype=torch.long, device=device)
    top_k = min(top_k, model.config.vocab_size) if top_k is not None else None
    return idx, top_k, torch.Generator(device=device).manual_seed(seed)


def check_prompt_text(prompt: str) -> str:
    """A prompt that can be encoded: no lone surrogates (what Python makes of bytes that are not UTF-8 on a
    command line, or of half a UTF-16 pair); else a one-sentence ValueError."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"The prompt is not valid UTF-8 text (character {e.start + 1} is an undecodable byte or "
                         f"half a surrogate pair).") from None
    return prompt


def encode_prompt(tokenizer: WaveTokenizer, prompt: str) -> list[int]:
    """Prompt token ids; an empty prompt starts from a newline, since the model needs one token."""
    if not isinstance(prompt, str):
        raise TypeError(f"The prompt must be text, not {type(prompt).__name__}.")
    check_prompt_text(prompt)
    ids = tokenizer.encode(prompt) if prompt else []
    return ids or tokenizer.encode("\n")


class IncrementalDecoder:
    """Turns a stream of token ids into text pieces that never end in half a character.

    Byte-level BPE may split one UTF-8 character over several tokens; decoding them one at
    a time would print U+FFFD. Tokens are held back while their text ends in U+FFFD, and
    a piece is cut only where the decoded text is clean, so the pieces concatenate to
    exactly `tokenizer.decode(all_ids)`.
    """

    MAX_PENDING = 32  # past this, garbage (bytes that never form a character) is let through

    def __init__(self, tokenizer: WaveTokenizer):
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if not text.endswith("\ufffd"):
            self.pending = []
            return text
        if len(self.pending) <= 4:  # a character has at most 4 bytes: wait for the rest
            return ""
        for cut in range(len(self.pending) - 1, 0, -1):  # emit up to the last clean point
            head = self.tokenizer.decode(self.pending[:cut])
            if not head.endswith("\ufffd"):
                self.pending = self.pending[cut:]
                return head
        return self.flush() if len(self.pending) > self.MAX_PENDING else ""

    def flush(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text


class StopStrings:
    """Cuts one sample's text before the first stop string, holding back any tail that could still
    become one (so nothing after a stop string is ever emitted)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        text = self.held + piece
        hits = [text.find(s) for s in self.stops if s in text]
        if hits:
            self.stopped, self.held = True, ""
            return text[: min(hits)]
        keep = max((k for s in self.stops for k in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self.held = self.held, ""
        return text


def stream_samples(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    num_samples: int = 1,
    stop_at_eot: bool = True,
    stop: Sequence[str] = (),
    repetition_penalty: float = 1.0,
    stats: dict | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield (sample index, text piece) as tokens are produced, sample 0's text first, then 1's, ...

    The samples are drawn together as one batch; sample i has its own generator seeded with
    seed + i, so it is the text a single sample with that seed gives. A sample ends at
    max_new_tokens, at the end-of-text token (unless stop_at_eot is False; the token itself is
    not emitted) or before the first of the `stop` strings; `stats`, if given, receives the
    number of tokens generated ("tokens") and why each sample ended ("ended").
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, num_samples, repetition_penalty)
    if isinstance(stop, str) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop must be a list of strings.")
    seed = random_seed() if seed is None else seed
    idx, top_k, generator = sampling_inputs(model, tokenizer, prompt, top_k, seed)
    generators = [generator] + [torch.Generator(device=idx.device).manual_seed(seed + i)
                                for i in range(1, num_samples)]
    decoders = [IncrementalDecoder(tokenizer) for _ in range(num_samples)]
    stops = [StopStrings(stop) for _ in range(num_samples)]
    ended: list[str | None] = [None] * num_samples
    buffers = [""] * num_samples  # text of samples not yet being streamed
    current, generated = 0, 0

    def emit(sample: int, text: str) -> Iterator[tuple[int, str]]:
        if not text:
            return
        if sample == current:
            yield sample, text
        else:
            buffers[sample] += text

    def advance() -> Iterator[tuple[int, str]]:  # the streamed sample ended: the next one's buffer follows
        nonlocal current
        while current < num_samples and ended[current] is not None:
            current += 1
            if current < num_samples and buffers[current]:
                yield current, buffers[current]
                buffers[current] = ""

    steps = sample_tokens(model, idx.expand(num_samples, -1), max_new_tokens, temperature, top_k, top_p,
                          use_cache=use_cache, generator=generators if num_samples > 1 else generator,
                          repetition_penalty=repetition_penalty)
    try:
        for step, (tokens, _) in enumerate(steps):
            for i, token in enumerate(tokens.tolist()):
                if ended[i] is not None:
                    continue
                generated += 1
                if stop_at_eot and token == tokenizer.eot_id:
                    ended[i] = "eot"
                    yield from emit(i, stops[i].push(decoders[i].flush()) + stops[i].flush())
                else:
                    yield from emit(i, stops[i].push(decoders[i].push(token)))
                    if stops[i].stopped:
                        ended[i] = "stop"
                    elif step + 1 == max_new_tokens:
                        ended[i] = "length"
                        yield from emit(i, stops[i].push(decoders[i].flush()) + stops[i].flush())
            yield from advance()
            if all(e is not None for e in ended):
                break
    finally:
        steps.close()
        if stats is not None:
            stats.update(tokens=generated, ended=ended)


def stream_text(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    num_samples: int = 1,
    **stops: Any,
) -> Iterator[str]:
    """Yield the generated text (without the prompt) piece by piece as it is sampled.

    With several samples, they follow each other separated by SAMPLE_SEPARATOR. `stops`:
    stream_samples' stop_at_eot, stop and repetition_penalty.
    """
    current = 0
    for sample, piece in stream_samples(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                        seed, use_cache, num_samples, **stops):
        if sample != current:
            yield SAMPLE_SEPARATOR * (sample - current)  # a sample that produced no text still gets its line
            current = sample
        yield piece


def generate_texts(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    num_samples: int = 1,
    **stops: Any,
) -> list[str]:
    """The generated continuations (without the prompt), one string per sample (`stops` as in stream_text)."""
    texts = [""] * num_samples if isinstance(num_samples, int) and num_samples > 0 else []
    for sample, piece in stream_samples(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                        seed, use_cache, num_samples, **stops):
        texts[sample] += piece
    return texts
