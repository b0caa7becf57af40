"""The Gradio app: pick a checkpoint, sample text as it streams, look at the prompt's waves.

`build_app(folder)` lists the model folders under `folder` (the folder itself when it holds
a model, and each subfolder, training run folders included) and serves them; nothing else
can be chosen. Text is sampled through `wavegpt.generation.stream_text`, the same loop as
`generate.py`, so a seed gives the same text in both. Every request is checked again on the
server (the page's limits are only a convenience) and a bad one answers with a
one-sentence `gr.Error`, never a stack trace. Models load once per checkpoint and stay
cached. The "Render animation" button only exists when `wavegpt.viz.animation` imports.

All request logic lives in `WaveApp`, free of widgets, so it can be tested directly.
"""

from __future__ import annotations

import atexit
import importlib
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from matplotlib.figure import Figure

from .checkpoint import WEIGHTS_NAME, CheckpointError, load_config, resolve_checkpoint
from .generation import (
    SamplingSettings,
    check_prompt_text,
    encode_prompt,
    load_for_generation,
    random_seed,
    resolve_device,
    stream_text,
)
from .model.embedding import WAVE_SAMPLES, WAVE_SPAN, WavePacketEmbedding
from .model.gpt import WaveGPT
from .sampling import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_K
from .tokenizer import WaveTokenizer
from .viz.animation import render_animation

APP_MAX_NEW_TOKENS = 1000  # per request: a shared server should not spend minutes on one visitor
MAX_TEMPERATURE = 2.0
MIN_TOP_P = 0.05
MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**53 - 1  # the largest integer a browser's number box holds exactly
ANIMATION_MAX_TOKENS = 60  # ~8 s of video at 8 fps; longer renders tie up the CPU
ANIMATION_KEEP_S = 3600  # rendered videos older than this are deleted at the next render
WAVE_TOKENS = 16  # prompt tokens drawn at most; more lines are unreadable
MODEL_CACHE_SIZE = 4
# The page's starting values: the commands' sampling defaults (sampling.py), top-p off, seed 0.
DEFAULTS = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "temperature": DEFAULT_TEMPERATURE, "top_k": DEFAULT_TOP_K,
            "top_p": 1.0, "seed": 0}

CLASSIC_NOTE = ("This is a classic GPT checkpoint: its tokens are lookup vectors, not wave packets, "
                "so there are no waves to draw.")
WAVES_HELP = """### The prompt's waves
**Left:** each prompt token's wave packet, the continuous signal
s(t) = Σ<sub>w,n</sub> A<sub>wn</sub> sin(n f<sub>w</sub> t + φ<sub>w</sub>) of its embedding (one line per token).
**Right:** each token's own phases φ<sub>w</sub>, one dot per wave on the unit circle, dot size ∝ that wave's
amplitude. A packet is the token's own, the same at every position: position enters inside interference
attention as a relative phase (a wavegpt 0.1 model instead added p·ω to every phase of the packet).
Drawn for the first 16 prompt tokens, on **Show waves** and on every **Generate**."""
ANIMATION_HELP = """### Animation
Replays the last generation (same checkpoint, prompt, seed and sampling values, at most
60 tokens) as an MP4: each frame shows the token's wave packet, the attention (interference)
over the context, the next-token distribution collapsing onto the sampled token, and the text so far."""


def list_checkpoints(checkpoint_dir: str | Path) -> dict[str, Path]:
    """Model folders by their name relative to `checkpoint_dir` ("." for the folder itself),
    "." first, then subfolders alphabetically; a folder counts when a model.safetensors
    resolves from it (itself, or a training run's best/ or checkpoint/)."""
    root = Path(checkpoint_dir)
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"Checkpoint folder {root} is a file, not a folder.")
    if not root.is_dir():
        raise CheckpointError(f"Checkpoint folder {root} does not exist.")
    subfolders = sorted(p for p in root.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and not p.name.endswith(".old"))
    found: dict[str, Path] = {}
    for name, folder in [(".", root)] + [(p.name, p) for p in subfolders]:
        try:
            model = resolve_checkpoint(folder)
            holds_model = (model / WEIGHTS_NAME).is_file() and _stays_inside(root, folder, model)
        except (CheckpointError, OSError):
            holds_model = False
        if holds_model:
            found[name] = folder
    return found


def _stays_inside(root: Path, folder: Path, model: Path) -> bool:
    """True when the folder, its model folder and every file the app reads from them resolve inside
    `root`: a symlink that leads outside the checkpoint folder is neither listed nor served."""
    base = root.resolve()
    paths = [folder, model] + [d / n for d in (model, folder) for n in ("config.json", WEIGHTS_NAME, "tokenizer.json")
                               if os.path.lexists(d / n)]
    return all(p.resolve().is_relative_to(base) for p in paths)


def _refusal(message: str) -> gr.Error:
    """The app's answer to a bad request: the sentence on the page, and no traceback in the server's log
    (a visitor's typo is not a server fault)."""
    return gr.Error(message, print_exception=False)


def _whole(value: Any, what: str) -> int:
    """An integer from the page's number (a slider may send 12.0), else a readable error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise _refusal(f"{what} must be a whole number, not {value!r}.")
    return int(value)


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refusal(f"{what} must be a number, not {value!r}.")
    return float(value)


def _token_label(tokenizer: WaveTokenizer, token: int) -> str:
    """The token's text with its spaces and newlines visible (repr), kept short for a legend."""
    text = repr(tokenizer.decode([token]))
    return text if len(text) <= 18 else text[:16] + "…'"


def wave_figure(embedding: WavePacketEmbedding, tokenizer: WaveTokenizer, ids: list[int]) -> Figure:
    """Signal curves (left) and phases on the unit circle (right) of the tokens `ids`."""
    device = embedding.phases.device
    idx = torch.tensor(ids, dtype=torch.long, device=device)
    t = torch.linspace(0.0, WAVE_SPAN, WAVE_SAMPLES, device=device)
    with torch.no_grad():
        signal = embedding.signal(idx, t).float().cpu().numpy()
        phases = torch.remainder(embedding.phases[idx], 2 * math.pi).float().cpu().numpy()
        strength = embedding.amplitudes[idx].norm(dim=-1).float().cpu().numpy()  # (N, W)
    x = t.cpu().numpy()
    size = 12 + 110 * strength / max(float(strength.max()), 1e-9)
    colours = [f"C{i % 10}" for i in range(len(ids))]
    styles = ["-", "--"]  # the second pass over the 10 colours gets dashes

    fig = Figure(figsize=(12, 4.4), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[3, 2])
    ax = fig.add_subplot(grid[0])
    polar = fig.add_subplot(grid[1], projection="polar")
    for i, token in enumerate(ids):
        label = f"{i}: {_token_label(tokenizer, token)}"
        ax.plot(x, signal[i], color=colours[i], linestyle=styles[(i // 10) % 2], linewidth=1.3, label=label)
        polar.scatter(phases[i], [1.0] * len(phases[i]), s=size[i], color=colours[i], alpha=0.75,
                      edgecolors="white", linewidths=0.5)
    ax.set(title="Wave packets s(t)", xlabel="t", ylabel="signal", xlim=(0, WAVE_SPAN))
    ax.axhline(0, color="0.7", linewidth=0.6)
    ax.grid(alpha=0.3)
    polar.set_title(r"Phases $\varphi_w$ on the unit circle")
    polar.set_ylim(0, 1.2)
    polar.set_yticks([1.0], labels=[""])
    fig.legend(loc="outside right upper", fontsize=8, title="prompt token", title_fontsize=8)
    return fig


class WaveApp:
    """The server side of the app: what may be chosen, the model cache, and each request.

    Checkpoint names are fixed when the app is built; a request naming anything else is
    refused, so no path from the page ever reaches the file system.
    """

    def __init__(self, checkpoint_dir: str | Path, device: str | torch.device = "cpu",
                 max_new_tokens: int = APP_MAX_NEW_TOKENS):
        self.root = Path(checkpoint_dir)
        self.checkpoints = list_checkpoints(self.root)
        self.device = resolve_device(device)
        self.max_new_tokens = max_new_tokens
        self._models: OrderedDict[str, tuple[WaveGPT, WaveTokenizer]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_locks = {name: threading.Lock() for name in self.checkpoints}  # one load per model at a time
        self._animation_dir: Path | None = None

    # -- what may be chosen ------------------------------------------------------------

    def labels(self) -> list[tuple[str, str]]:
        """(shown label, value) pairs for the picker: "checkpoints/" for ".", "checkpoints/x" for x."""
        base = self.root.resolve().name or str(self.root)
        return [(f"{base}/" if name == "." else f"{base}/{name}", name) for name in self.checkpoints]

    def max_vocab(self) -> int:
        """The top-k slider's end: the largest vocabulary among the listed models."""
        sizes = []
        for folder in self.checkpoints.values():
            try:
                sizes.append(load_config(folder).vocab_size)
            except CheckpointError:
                continue
        return max(sizes, default=1024)

    def checkpoint_path(self, name: Any) -> Path:
        """The listed folder called `name`; anything not in the list is refused."""
        if not self.checkpoints:
            raise _refusal(f"No checkpoints are available: {self.root} holds no model folder.")
        if not isinstance(name, str) or name not in self.checkpoints:
            shown = repr(name)[:60]
            raise _refusal(f"Checkpoint {shown} is not one of the listed checkpoints; choose one from the list.")
        return self.checkpoints[name]

    def load(self, name: Any) -> tuple[WaveGPT, WaveTokenizer]:
        """The cached model and tokenizer of a listed checkpoint, loaded on first use."""
        path = self.checkpoint_path(name)
        with self._load_locks[name]:
            with self._cache_lock:
                if name in self._models:
                    self._models.move_to_end(name)
                    return self._models[name]
            try:
                if not _stays_inside(self.root, path, resolve_checkpoint(path)):  # a link changed since listing
                    raise CheckpointError(f"it now leads outside {self.root}")
                loaded = load_for_generation(path, self.device)
            except (CheckpointError, ValueError, OSError) as e:
                raise _refusal(f"Checkpoint {name!r} could not be loaded: {e}") from None
            with self._cache_lock:
                self._models[name] = loaded
                while len(self._models) > MODEL_CACHE_SIZE:
                    self._models.popitem(last=False)
        return loaded

    # -- request checks ----------------------------------------------------------------

    @staticmethod
    def check_prompt(prompt: Any) -> str:
        if prompt is None:
            return ""
        if not isinstance(prompt, str):
            raise _refusal(f"The prompt must be text, not {type(prompt).__name__}.")
        try:
            check_prompt_text(prompt)
        except ValueError as e:
            raise _refusal(str(e)) from None
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _refusal(f"The prompt is {len(prompt)} characters long; the app takes at most {MAX_PROMPT_CHARS}.")
        return prompt

    def sampling_settings(self, max_new_tokens: Any, temperature: Any, top_k: Any, top_p: Any,
                          seed: Any) -> SamplingSettings:
        """The request's values as SamplingSettings (top-k 0 and top-p 1 mean off), within the app's limits."""
        n = _whole(max_new_tokens, "Max new tokens")
        if not 1 <= n <= self.max_new_tokens:
            raise _refusal(f"Max new tokens must be between 1 and {self.max_new_tokens} in the app, not {n}.")
        temp = _real(temperature, "Temperature")
        if not 0 <= temp <= MAX_TEMPERATURE:
            raise _refusal(f"Temperature must be between 0 (greedy) and {MAX_TEMPERATURE:g}, not {temp:g}.")
        k = _whole(top_k, "Top-k")
        if k < 0:
            raise _refusal(f"Top-k must be 0 (off) or more, not {k}.")
        p = _real(top_p, "Top-p")
        if not MIN_TOP_P <= p <= 1:
            raise _refusal(f"Top-p must be between {MIN_TOP_P:g} and 1 (off), not {p:g}.")
        s = _whole(seed, "Seed")
        if not 0 <= s <= MAX_SEED:
            raise _refusal(f"Seed must be between 0 and {MAX_SEED}, not {s if abs(s) < 10**20 else f'{s:.3g}'}.")
        try:
            return SamplingSettings(max_new_tokens=n, temperature=temp, top_k=k or None,
                                    top_p=None if p >= 1 else p, seed=s)
        except ValueError as e:
            raise _refusal(str(e)) from None

    # -- requests ----------------------------------------------------------------------

    def generate(self, name: Any, prompt: Any, max_new_tokens: Any, temperature: Any, top_k: Any,
                 top_p: Any, seed: Any) -> Iterator[str]:
        """Yield the generated text (without the prompt) so far, first "" then once per piece."""
        prompt = self.check_prompt(prompt)
        settings = self.sampling_settings(max_new_tokens, temperature, top_k, top_p, seed)
        model, tokenizer = self.load(name)
        text = ""
        yield text
        try:
            for piece in stream_text(model, tokenizer, prompt, settings=settings):
                text += piece
                yield text
        except (ValueError, RuntimeError) as e:  # e.g. out of memory: one line, and the server lives on
            raise _refusal(f"Generation stopped: {e}") from None

    def waves(self, name: Any, prompt: Any) -> tuple[Figure | None, str]:
        """The prompt's wave figure and a line saying what it shows (or why there is none)."""
        prompt = self.check_prompt(prompt)
        model, tokenizer = self.load(name)
        embedding = model.embedding
        if not isinstance(embedding, WavePacketEmbedding):
            return None, CLASSIC_NOTE
        ids = encode_prompt(tokenizer, prompt)
        shown = ids[:WAVE_TOKENS]
        note = f"All {len(ids)} prompt tokens." if len(shown) == len(ids) else \
            f"The first {len(shown)} of {len(ids)} prompt tokens."
        if not prompt:
            note = "The prompt is empty, so generation starts from a newline token; its wave is shown."
        share = embedding.wave_share()
        if share < 1:
            note += f" Waves make up {share:.0%} of this model's embedding (the rest is a lookup table)."
        return wave_figure(embedding, tokenizer, shown), note

    def animate(self, settings: dict[str, Any] | None,
                progress: Callable[[int, int], None] | None = None) -> tuple[Path, str]:
        """Render the last generation as an MP4; returns its path and a one-line summary."""

        if not settings:
            raise _refusal("Generate some text first: the animation replays the last generation's settings.")
        prompt = self.check_prompt(settings.get("prompt"))
        sampling = self.sampling_settings(settings.get("max_new_tokens"), settings.get("temperature"),
                                          settings.get("top_k"), settings.get("top_p"), settings.get("seed"))
        sampling = sampling.replace(max_new_tokens=min(sampling.max_new_tokens, ANIMATION_MAX_TOKENS))
        # The shared model is used as is: the mixer weights come back with each forward pass,
        # nothing is switched on the model, so concurrent generations cannot disturb the video.
        model, tokenizer = self.load(settings.get("checkpoint"))
        output = self._video_path()
        try:
            result = render_animation(model, tokenizer, prompt, sampling, output=output, progress=progress)
        except (ValueError, RuntimeError, OSError) as e:
            raise _refusal(f"The animation could not be rendered: {e}") from None
        summary = (f"{len(result.tokens)} tokens, {result.frames} frames, rendered in {result.seconds:.1f} s "
                   f"(seed {sampling.seed}).")
        return Path(result.path), summary

    def _video_path(self) -> Path:
        """A fresh file in the app's own temporary folder (which Gradio may serve), after
        deleting videos older than ANIMATION_KEEP_S."""
        if self._animation_dir is None:
            self._animation_dir = Path(tempfile.mkdtemp(prefix="wavegpt-app-"))
            atexit.register(shutil.rmtree, self._animation_dir, True)
        cutoff = time.time() - ANIMATION_KEEP_S
        for old in self._animation_dir.glob("*.mp4"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
        return self._animation_dir / f"wave-{uuid.uuid4().hex[:12]}.mp4"


def animation_available() -> bool:
    """True when wavegpt.viz.animation imports and has render_animation (it may be absent)."""
    try:
        module = importlib.import_module("wavegpt.viz.animation")
    except Exception:  # missing or half-written: the button is left out, not broken
        return False
    return callable(getattr(module, "render_animation", None))


def build_app(checkpoint_dir: str | Path, device: str | torch.device = "cpu", default: str | None = None,
              max_new_tokens: int = APP_MAX_NEW_TOKENS, concurrency: int = 2) -> gr.Blocks:
    """The app's page and events, queued (`concurrency` requests per event at a time).

    `default` names the checkpoint selected at first ("." when the folder itself holds a
    model, else the first listed). Raises CheckpointError if `checkpoint_dir` is missing.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from the server
    app = WaveApp(checkpoint_dir, device, max_new_tokens)
    names = list(app.checkpoints)
    if default not in names:
        default = names[0] if names else None
    with gr.Blocks(title="WaveGPT", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# WaveGPT\nSample text from a Wave-Native GPT checkpoint and look at the waves "
                    "its prompt is made of. The same checkpoint, prompt, seed and settings give the same text "
                    "as `generate.py`.")
        if not names:
            gr.Markdown(f"## ⚠️ No checkpoints found\n`{app.root}` holds no model folder (a folder with "
                        "`model.safetensors`, or a training run with `best/` or `checkpoint/`). Train one with "
                        "`wavegpt-train`, or start the app with `--checkpoint-dir FOLDER`.",
                        elem_id="no-checkpoints")
        last = gr.State(None)  # the settings of this page's last generation, for the animation
        controls = _sampling_controls(app, default, max_new_tokens)
        _waves_section(app, controls)
        if animation_available():
            _animation_section(app, last)
        _generation_events(app, controls, last)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    return demo


def _sampling_controls(app: WaveApp, default: str | None, max_new_tokens: int) -> dict[str, Any]:
    """The checkpoint picker, prompt, sampling sliders, seed, buttons and the output box, by name."""
    vocab = app.max_vocab()
    c: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=2):
            c["checkpoint"] = gr.Dropdown(choices=app.labels(), value=default, label="Checkpoint",
                                          allow_custom_value=False, interactive=True, elem_id="checkpoint",
                                          info=f"Model folders in {app.root.resolve().name or app.root}/")
            c["prompt"] = gr.Textbox(label="Prompt", lines=3, placeholder="ROMEO:", elem_id="prompt")
            c["max_new"] = gr.Slider(1, max_new_tokens, value=min(DEFAULTS["max_new_tokens"], max_new_tokens),
                                     step=1, label="Max new tokens")
            c["temperature"] = gr.Slider(0, MAX_TEMPERATURE, value=DEFAULTS["temperature"], step=0.05,
                                         label="Temperature", info="0 is greedy; higher is more random")
            c["top_k"] = gr.Slider(0, vocab, value=min(DEFAULTS["top_k"], vocab), step=1, label="Top-k",
                                   info="sample among the k likeliest tokens; 0 turns it off")
            c["top_p"] = gr.Slider(MIN_TOP_P, 1, value=DEFAULTS["top_p"], step=0.05, label="Top-p",
                                   info="nucleus sampling; 1 turns it off")
            with gr.Row():
                c["seed"] = gr.Number(value=DEFAULTS["seed"], precision=0, minimum=0, maximum=MAX_SEED,
                                      label="Seed", info="same seed, same text", scale=3)
                c["new_seed"] = gr.Button("New seed", scale=1)
            with gr.Row():
                c["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
                c["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")
        with gr.Column(scale=3):
            c["output"] = gr.Textbox(label="Generated text (continues the prompt)", lines=14, max_lines=30,
                                     interactive=False, elem_id="output")
    return c


def _waves_section(app: WaveApp, c: dict[str, Any]) -> None:
    """The prompt's waves (drawn on Show waves, and on every Generate: see _generation_events)."""
    with gr.Column(variant="panel"):
        gr.Markdown(WAVES_HELP)
        c["waves_btn"] = gr.Button("Show waves", elem_id="show-waves")
        c["waves_note"] = gr.Markdown()
        c["waves_plot"] = gr.Plot(label="Wave packets and phases of the prompt's tokens", format="png",
                                  elem_id="waves-plot")


def _animation_section(app: WaveApp, last: gr.State) -> None:
    """Render animation: replays the page's last generation as an MP4."""
    def on_animate(settings: dict[str, Any] | None, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        def report(done: int, total: int) -> None:
            progress((done, total), desc="Rendering frames", unit="frames")

        path, summary = app.animate(settings, report)
        return str(path), summary

    with gr.Column(variant="panel"):
        gr.Markdown(ANIMATION_HELP)
        animate_btn = gr.Button("Render animation", elem_id="render-animation")
        video = gr.Video(label="Animation of the last generation (MP4)", interactive=False)
        animation_note = gr.Markdown()
    animate_btn.click(on_animate, inputs=last, outputs=[video, animation_note], api_name="animate",
                      concurrency_limit=1)


def _generation_events(app: WaveApp, c: dict[str, Any], last: gr.State) -> None:
    """Generate streams into the output box, draws the prompt's waves and remembers its settings for the
    animation; Stop cancels it; Show waves and New seed."""
    def on_waves_with_generate(name: str, prompt: str) -> tuple[Figure | None, str]:
        try:
            return app.waves(name, prompt)
        except gr.Error as e:  # the generate event already shows this error; say it quietly here
            return None, f"_{e.message}_"

    def on_generate(name: str, prompt: str, n: float, temperature: float, top_k: float, top_p: float,
                    seed: float) -> Iterator[tuple[str, dict[str, Any]]]:
        settings = {"checkpoint": name, "prompt": prompt, "max_new_tokens": n, "temperature": temperature,
                    "top_k": top_k, "top_p": top_p, "seed": seed}
        for text in app.generate(name, prompt, n, temperature, top_k, top_p, seed):
            yield text, settings

    inputs = [c[k] for k in ("checkpoint", "prompt", "max_new", "temperature", "top_k", "top_p", "seed")]
    # preprocess=False: WaveApp's checks see each request's raw values, so a wrong type sent to the API
    # gets their one sentence, not a component's conversion error and a traceback in the log.
    generation = c["generate"].click(on_generate, inputs=inputs, outputs=[c["output"], last], api_name="generate",
                                     preprocess=False)
    waves_in, waves_out = [c["checkpoint"], c["prompt"]], [c["waves_plot"], c["waves_note"]]
    c["generate"].click(on_waves_with_generate, inputs=waves_in, outputs=waves_out, api_name="waves_on_generate",
                        preprocess=False)
    c["stop"].click(None, cancels=[generation])
    c["waves_btn"].click(app.waves, inputs=waves_in, outputs=waves_out, api_name="waves", preprocess=False)
    c["new_seed"].click(random_seed, outputs=c["seed"], queue=False, api_name="new_seed")
