"""Text in, text out: load a checkpoint with its tokenizer and stream sampled text.

Everything here is a thin layer over `wavegpt.sampling.sample_steps`, the one decoding
loop, driven by one `SamplingSettings`, so the CLI, the app and the animation sample
identically. Sampling fields may be given as keywords (`generate_texts(model, tok, "the", 40,
temperature=0.9, seed=1)`) or as `settings=SamplingSettings(...)`. Decoding is incremental
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

import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import TOKENIZER_NAME, WEIGHTS_NAME, CheckpointError, resolve_checkpoint
from .model.gpt import WaveGPT
from .sampling import MAX_NEW_TOKENS, MAX_SAMPLES, SamplingSettings, sample_steps
from .tokenizer import WaveTokenizer

__all__ = ["MAX_NEW_TOKENS", "MAX_SAMPLES", "SamplingSettings", "generate_texts", "load_for_generation",
           "stream_samples", "stream_text"]
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
        raise ValueError(f"--device {device!r} is not a device torch knows; use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA GPU is available; use --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available here; use --device cpu.")
    return dev


def load_for_generation(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[WaveGPT, WaveTokenizer]:
    """Model (in eval mode, on `device`) and the tokenizer it was trained with."""
    dev = resolve_device(device)
    return load_resolved(resolve_checkpoint(checkpoint), dev, checkpoint)


def load_resolved(folder: Path, device: str | torch.device = "cpu",
                  given: str | Path | None = None) -> tuple[WaveGPT, WaveTokenizer]:
    """load_for_generation of a folder resolve_checkpoint already found (`given`: the folder as named, whose
    tokenizer.json is the fallback: a training run keeps one both in its model folders and at its top)."""
    dev = resolve_device(device)
    candidates = [folder / TOKENIZER_NAME] + ([Path(given) / TOKENIZER_NAME] if given is not None else [])
    tok_path = next((p for p in candidates if p.is_file()), None)
    if tok_path is None:
        raise CheckpointError(f"{folder} has no {TOKENIZER_NAME}, so its token ids cannot be turned into text.")
    model = WaveGPT.from_resolved(folder, map_location=dev)
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


def sampling_inputs(model: WaveGPT, tokenizer: WaveTokenizer, prompt: str,
                    settings: SamplingSettings) -> tuple[torch.Tensor, SamplingSettings, list[torch.Generator]]:
    """The prompt ids, the settings made concrete for this model (a fresh seed drawn when none is
    set, top-k clipped to the vocabulary) and one seeded generator per sample (sample i: seed + i):
    everything that samples (generate.py, the app, the animation) starts here, so one seed gives
    one text."""
    device = next(model.parameters()).device
    idx = torch.tensor([encode_prompt(tokenizer, prompt)], dtype=torch.long, device=device)
    seed = random_seed() if settings.seed is None else settings.seed
    top_k = min(settings.top_k, model.config.vocab_size) if settings.top_k is not None else None
    settings = settings.replace(seed=seed, top_k=top_k)
    generators = [torch.Generator(device=device).manual_seed(seed + i) for i in range(settings.num_samples)]
    return idx, settings, generators


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
    max_new_tokens: int | None = None,
    *,
    settings: SamplingSettings | None = None,
    stats: dict | None = None,
    **fields: Any,
) -> Iterator[tuple[int, str]]:
    """Yield (sample index, text piece) as tokens are produced, sample 0's text first, then 1's, ...

    The samples are drawn together as one batch; sample i has its own generator seeded with
    seed + i, so it is the text a single sample with that seed gives. A sample ends at
    max_new_tokens, at the end-of-text token (unless stop_at_eot is False; the token itself is
    not emitted) or before the first of the `stop` strings; `stats`, if given, receives the
    number of tokens generated ("tokens"), why each sample ended ("ended") and the seed ("seed").
    """
    settings = SamplingSettings.of(settings, max_new_tokens, **fields)
    idx, settings, generators = sampling_inputs(model, tokenizer, prompt, settings)
    num_samples = settings.num_samples
    decoders = [IncrementalDecoder(tokenizer) for _ in range(num_samples)]
    stops = [StopStrings(settings.stop) for _ in range(num_samples)]
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

    steps = sample_steps(model, idx.expand(num_samples, -1), settings,
                         generators if num_samples > 1 else generators[0])
    try:
        for step, sampled in enumerate(steps):
            for i, token in enumerate(sampled.token.tolist()):
                if ended[i] is not None:
                    continue
                generated += 1
                if settings.stop_at_eot and token == tokenizer.eot_id:
                    ended[i] = "eot"
                    yield from emit(i, stops[i].push(decoders[i].flush()) + stops[i].flush())
                else:
                    yield from emit(i, stops[i].push(decoders[i].push(token)))
                    if stops[i].stopped:
                        ended[i] = "stop"
                    elif step + 1 == settings.max_new_tokens:
                        ended[i] = "length"
                        yield from emit(i, stops[i].push(decoders[i].flush()) + stops[i].flush())
            yield from advance()
            if all(e is not None for e in ended):
                break
    finally:
        steps.close()
        if stats is not None:
            stats.update(tokens=generated, ended=ended, seed=settings.seed)


def stream_text(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    max_new_tokens: int | None = None,
    *,
    settings: SamplingSettings | None = None,
    **fields: Any,
) -> Iterator[str]:
    """Yield the generated text (without the prompt) piece by piece as it is sampled.

    With several samples, they follow each other separated by SAMPLE_SEPARATOR. Sampling fields
    as in stream_samples.
    """
    current = 0
    for sample, piece in stream_samples(model, tokenizer, prompt, max_new_tokens, settings=settings, **fields):
        if sample != current:
            yield SAMPLE_SEPARATOR * (sample - current)  # a sample that produced no text still gets its line
            current = sample
        yield piece


def generate_texts(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    max_new_tokens: int | None = None,
    *,
    settings: SamplingSettings | None = None,
    **fields: Any,
) -> list[str]:
    """The generated continuations (without the prompt), one string per sample (fields as in stream_samples)."""
    settings = SamplingSettings.of(settings, max_new_tokens, **fields)
    texts = [""] * settings.num_samples
    for sample, piece in stream_samples(model, tokenizer, prompt, settings=settings):
        texts[sample] += piece
    return texts
