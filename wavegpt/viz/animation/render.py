"""MP4 videos of the wave dynamics during generation, drawn from the model's own state.

Each generated token gets `frames_per_token` frames of one 1280x720 (by default) figure
with four panels, all describing the same forward pass of `sample_tokens`:

1. Wave packet: the continuous signal s(t) of the token being read (the newest token of
   the context; at the first step, the last prompt token) and each harmonic's share of it,
   from `WavePacketEmbedding.signal` / `.harmonics`. A classic checkpoint has no wave
   packets (its tokens are lookup vectors), so this panel says so instead.
2. Mixer: that token's query weights over the window, as the chosen layer's mixer returned
   them with the forward pass that sampled the token (`MixerWeights`, via
   `sample_steps(..., weights_of=layer)`): softmax weights for interference and classic
   attention, kernel(q.k)/sqrt(t+1) for quadratic pure-wave attention, phi(q).phi(k) over its
   row sum in linear mode. The Wave Network mixer has no weights over positions: it shows each
   context token's phase against the newest token's global semantics G (and G itself in the
   caption), for a group of d/n_heads dimensions. The last 32 positions are shown; the window
   is the one the sampler reports, so after it slides (see `wavegpt.sampling`) the row is
   shorter.
3. Collapse: the ten likeliest next tokens under the distribution the token was sampled
   from (after temperature, top-k and top-p), the sampled one highlighted.
4. The text so far (its last ~400 characters), the new token highlighted.

Each panel (`WavePanel`, `MixerPanel`, `CollapsePanel`, `TextPanel`) builds its own axes
and has its own `update(FrameState)` and `draw(frame)`; a new mixer adds or swaps a panel.
Sampling goes through `sample_steps` with the same SamplingSettings, prompt encoding and
seeded generator as `wavegpt.generation.stream_samples`, so a video shows exactly the
tokens `generate.py` prints for the same checkpoint, seed and sampling flags.

Speed (the README gives the measured figures, `benchmarks/animation_speed.py`): the matplotlib figure
(Agg) is built and drawn once; each frame restores that background, redraws the wave
lines, and fills bars and blends text from cached glyph bitmaps with numpy, because
matplotlib re-lays-out every Text on every draw. Frames are streamed to ffmpeg (libx264,
yuv420p, +faststart: plays in browsers and Gradio) while the next one is drawn. The video
is written to a hidden file next to `output` and renamed onto it at the end, so a failed
render never leaves a broken file at the target.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...generation import sampling_inputs
from ...model.gpt import WaveGPT
from ...model.mixers import mixer_entry
from ...sampling import SampleStep, SamplingSettings, sample_steps
from ...tokenizer import WaveTokenizer
from .canvas import DEFAULT_SIZE, MUTED, _Canvas
from .panels import (
    CLASSIC_NOTE,
    MAX_FRAMES_PER_TOKEN,
    CollapsePanel,
    FrameState,
    MixerPanel,
    TextPanel,
    WavePanel,
    _Panel,
)

MAX_TOKENS = 2000  # ~4 min of video at 8 fps; more is almost surely a typo (and a long CPU wait)
MIN_FPS, MAX_FPS = 1, 60
MIN_SIZE, MAX_SIZE = (320, 180), (3840, 2160)


@dataclass
class AnimationResult:
    """What a render produced; the timings split the model's share from drawing and encoding."""

    path: Path
    frames: int
    tokens: list[int]  # the new token ids, in order
    text: str  # tokenizer.decode(tokens): what generate.py prints after the prompt
    seconds: float  # wall time of the whole render
    seed: int = 0
    model_seconds: float = 0.0  # inside sample_tokens (forward passes and sampling)
    draw_seconds: float = 0.0  # updating the figure and rasterising it
    encode_seconds: float = 0.0  # handing frames to ffmpeg and finishing the file


# --- argument checks (one-sentence ValueErrors; the CLI turns them into "error: ...") ----


def check_output(output: str | os.PathLike[str]) -> Path:
    """The output path, if it names an .mp4 file in an existing, writable folder."""
    path = Path(output)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"The output must be an .mp4 file, not {str(path)!r}.")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"The output's folder {str(folder)!r} is a file, not a folder.")
    if not folder.is_dir():
        raise ValueError(f"The output folder {str(folder)!r} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"The output folder {str(folder)!r} is not writable.")
    if path.is_dir():
        raise ValueError(f"The output {str(path)!r} is a folder, not a file.")
    return path


def check_render_args(tokens: int, fps: int, frames_per_token: int, size: tuple[int, int]) -> None:
    """Checks that need no model: token count, frame rate, frames per token, frame size."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS:
        raise ValueError(f"tokens must be between 1 and {MAX_TOKENS}, not {tokens}.")
    if isinstance(fps, bool) or not isinstance(fps, int) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a whole number between {MIN_FPS} and {MAX_FPS}, not {fps}.")
    if (isinstance(frames_per_token, bool) or not isinstance(frames_per_token, int)
            or not 1 <= frames_per_token <= MAX_FRAMES_PER_TOKEN):
        raise ValueError(f"frames_per_token must be between 1 and {MAX_FRAMES_PER_TOKEN}, not {frames_per_token}.")
    if (not isinstance(size, tuple | list) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise ValueError(f"size must be (width, height) in pixels, not {size!r}.")
    w, h = size
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise ValueError(f"The frame size must be from {MIN_SIZE[0]}x{MIN_SIZE[1]} to "
                         f"{MAX_SIZE[0]}x{MAX_SIZE[1]} pixels, not {w}x{h}.")
    if w % 2 or h % 2:
        raise ValueError(f"The frame width and height must be even (H.264 with yuv420p), not {w}x{h}.")


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720), checked like `render_animation` checks its size."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×X]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"The size must look like 1280x720 (width x height), not {text!r}.")
    size = (int(match[1]), int(match[2]))
    check_render_args(1, MIN_FPS, 1, size)
    return size


def check_layer_head(model: WaveGPT, layer: int, head: int) -> tuple[int, int]:
    """Layer and head as non-negative indices; negative ones count from the end, like Python's."""
    n_layers, n_heads = model.config.n_layers, model.config.n_heads
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be between {-n_layers} and {n_layers - 1} for this "
                         f"{n_layers}-layer model, not {layer}.")
    if isinstance(head, bool) or not isinstance(head, int) or not -n_heads <= head < n_heads:
        raise ValueError(f"head must be between {-n_heads} and {n_heads - 1} for this "
                         f"{n_heads}-head model, not {head}.")
    return layer % n_layers, head % n_heads


class _Scene:
    """One persistent 1280x720-style figure made of panels, redrawn by blitting: that is the speed.

    Everything that stays put (panels, grids, static titles, the legend, numeric axes) is
    drawn once into a cached background; each frame restores it, draws the wave lines (the
    only animated matplotlib artists), then lets each panel fill its bars and gridlines and
    blends the changing text in from cached glyph bitmaps with numpy. The two data-dependent
    axes (mixer weights, probabilities) are therefore drawn per frame too, on a
    1-1.5-2-3-5-7.5 ladder with hysteresis so their scale does not jitter; the wave panel
    has one scale per video (the tallest packet in a sample of the vocabulary), so
    amplitudes compare across frames.
    """

    def __init__(self, model: WaveGPT, tokenizer: WaveTokenizer, size: tuple[int, int], layer: int, head: int):
        canvas = self.canvas = _Canvas(tokenizer, size)
        cfg = model.config
        self.heading = "Classic GPT" if cfg.model_type == "classic" else "Wave-Native GPT"
        canvas.fig.text(0.5, 0.932, f"preset {cfg.preset} · {mixer_entry(cfg).label(cfg)} · "
                        f"{cfg.n_layers} layers × {cfg.n_heads} heads · d_model {cfg.d_model}",
                        ha="center", va="top", color=MUTED, fontsize=10, parse_math=False)
        self.wave = WavePanel(canvas, model)
        self.mixer = MixerPanel(canvas, model, layer, head)
        self.collapse = CollapsePanel(canvas)
        self.text = TextPanel(canvas)
        self.panels: list[_Panel] = [self.wave, self.mixer, self.collapse, self.text]
        self.background = None

    def update(self, state: FrameState) -> None:
        """Point every panel at this frame's model state."""
        canvas = self.canvas
        canvas.texts = []
        canvas.text(f"{self.heading} generating: token {state.step + 1} of {state.total}", canvas.size[0] / 2,
                    0.025 * canvas.size[1], face="bold", size=15, ha="center", va="top")
        for panel in self.panels:
            panel.update(state)

    def render(self) -> np.ndarray:
        """The frame as a C-contiguous (H, W, 4) RGBA uint8 array (the canvas' own buffer: send it, then redraw).

        RGBA goes to ffmpeg as is: slicing off alpha would cost a strided copy per frame.
        """
        canvas = self.canvas
        if self.background is None:
            canvas.agg.draw()  # animated artists are skipped: this is the background
            self.background = canvas.agg.copy_from_bbox(canvas.fig.bbox)
        else:
            canvas.agg.restore_region(self.background)
        renderer = canvas.agg.get_renderer()
        for artist in canvas.animated:
            artist.draw(renderer)
        frame = np.asarray(canvas.agg.buffer_rgba())
        if frame.shape[:2] != (canvas.size[1], canvas.size[0]):  # never expected: Agg sizes are exact
            raise RuntimeError(f"The figure rendered at {frame.shape[1]}x{frame.shape[0]}, not "
                               f"{canvas.size[0]}x{canvas.size[1]}.")
        rgb = frame[..., :3]  # a view: the drawing below lands in the canvas buffer
        for panel in self.panels[:-1]:
            panel.draw(rgb)
        for text, x, y, style in canvas.texts:
            canvas.sprites.draw(rgb, text, x, y, **style)
        self.text.draw(rgb)  # the text panel's own words, after the captions (as they always were drawn)
        return frame

    def close(self) -> None:
        self.canvas.fig.clear()


# --- the render ---------------------------------------------------------------------------


def _temp_path(target: Path) -> Path:
    """A hidden, unique .mp4 next to the target (same file system, so os.replace is atomic)."""
    return target.parent / f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.part.mp4"


def _sweep_stale_parts(target: Path) -> None:
    """Delete the partial videos that killed renders of this target left (their name is wavegpt's, and the
    process id in it is no longer running); a live render's file is left alone."""
    pattern = re.compile(rf"^\.{re.escape(target.stem)}\.(\d+)\.[0-9a-f]{{8}}\.part\.mp4$")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            (target.parent / name).unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or cannot tell: keep its file
    return True


def _video_failure(error: OSError, folder: Path) -> str:
    """Why writing the video failed, in words (imageio-ffmpeg's own message holds the whole ffmpeg command)."""
    try:
        full = shutil.disk_usage(folder).free < 16 * 2**20
    except OSError:
        full = False
    if full or error.errno in (28, 122):  # ENOSPC, EDQUOT
        return f"the disk holding {str(folder)!r} is full"
    text = str(error)
    lines = [line.strip() for line in text.split("FFMPEG STDERR OUTPUT:")[-1].splitlines() if line.strip()]
    if "FFMPEG" in text and lines:
        reason = lines[-1]
    else:
        reason = error.strerror or (text.splitlines()[0] if text else "")
    return f"ffmpeg stopped ({reason[:200]})" if reason else "ffmpeg stopped"


def _settings_for(model: WaveGPT, settings: SamplingSettings | None, tokens: int | None, fps: int,
                  frames_per_token: int, size: tuple[int, int], layer: int, head: int,
                  fields: dict[str, Any]) -> tuple[SamplingSettings, tuple[int, int], int, int]:
    """render_animation's arguments checked: the sampling settings (the seed defaults to 0, 40 tokens), the
    frame size, the layer and the head; a one-sentence ValueError before anything is rendered."""
    if tokens is not None:
        fields["max_new_tokens"] = tokens
    if settings is None:
        fields.setdefault("max_new_tokens", 40)
        fields.setdefault("seed", 0)
    tokens = fields.get("max_new_tokens", settings.max_new_tokens if settings is not None else None)
    size = tuple(size) if isinstance(size, list) else size
    check_render_args(tokens, fps, frames_per_token, size)
    settings = SamplingSettings.of(settings, **fields)
    if settings.num_samples != 1:
        raise ValueError(f"An animation shows one sample, not {settings.num_samples}.")
    layer, head = check_layer_head(model, layer, head)
    return settings, size, layer, head


def _claim_temp(target: Path) -> Path:
    """The hidden part file the video is written to, created now: a read-only folder fails before minutes of
    rendering, not after."""
    _sweep_stale_parts(target)
    tmp = _temp_path(target)
    try:
        tmp.touch(exist_ok=False)
    except OSError as e:
        raise ValueError(f"Cannot write to the output folder {str(tmp.parent)!r} ({e.strerror}).") from None
    return tmp


@dataclass
class _Timings:
    model: float = 0.0
    draw: float = 0.0
    encode: float = 0.0


def _frames(scene: _Scene, steps: Iterator[SampleStep], tokenizer: WaveTokenizer, prompt: str, tokens: int,
            frames_per_token: int, head: int, timings: _Timings, new_ids: list[int]) -> Iterator[np.ndarray]:
    """Each frame of the video, in order, as the sampler produces the tokens (appended to new_ids)."""
    text_before = ""
    for step in range(tokens):
        t0 = time.perf_counter()
        sampled = next(steps)
        # The row belongs to the newest query of the window the model read: the last prompt
        # token at the prefill, then the previous sampled token (shorter after a slide).
        mixed = sampled.weights
        row = mixed.row()[head].float().cpu().numpy()
        g = float(mixed.g[0, head, -1]) if mixed.g is not None else None
        probs = sampled.probs[0].float().cpu().numpy()
        context = sampled.window[0].tolist()
        timings.model += time.perf_counter() - t0
        token = int(sampled.token[0])
        new_ids.append(token)
        text_now = tokenizer.decode(new_ids)
        common = len(os.path.commonprefix([text_before, text_now]))
        for sub in range(frames_per_token):
            t0 = time.perf_counter()
            scene.update(FrameState(step=step, total=tokens, grow=(sub + 1) / frames_per_token,
                                    shift=0.5 * sub, context=context, weights=row, kind=mixed.kind, g=g,
                                    probs=probs, sampled=token, text_old=prompt + text_now[:common],
                                    text_new=text_now[common:]))
            frame = scene.render()
            timings.draw += time.perf_counter() - t0
            yield frame
        text_before = text_now


def render_animation(
    model: WaveGPT,
    tokenizer: WaveTokenizer,
    prompt: str,
    settings: SamplingSettings | None = None,
    *,
    output: str | os.PathLike[str] = "wave.mp4",
    fps: int = 8,
    frames_per_token: int = 1,
    layer: int = -1,
    head: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: Callable[[int, int], None] | None = None,
    tokens: int | None = None,
    **fields: Any,
) -> AnimationResult:
    """Generate `settings.max_new_tokens` tokens and write an H.264 MP4 of the model's state at each step.

    Sampling is given as `settings` (SamplingSettings; only one sample, no stops) or as its
    fields (`tokens=40, temperature=0.8, top_k=..., top_p=..., seed=...`; the seed defaults to
    0 here). Frames per token > 1 ease the bars in and let the wave packet travel, for smoother
    videos. `progress(frames_done, frames_total)` is called after every frame. Bad arguments
    raise a one-sentence ValueError before anything is rendered.
    """
    start = time.perf_counter()
    target = check_output(output)
    settings, size, layer, head = _settings_for(model, settings, tokens, fps, frames_per_token, size, layer, head,
                                                fields)
    tokens = settings.max_new_tokens
    idx, settings, generators = sampling_inputs(model, tokenizer, prompt, settings)

    import imageio_ffmpeg  # the [viz] extra, needed only once a video is written

    tmp = _claim_temp(target)
    writer: Generator[None, Any, None] | None = None
    steps: Iterator[SampleStep] | None = None
    scene: _Scene | None = None
    new_ids: list[int] = []
    timings = _Timings()
    total_frames = tokens * frames_per_token
    try:
        scene = _Scene(model, tokenizer, size, layer, head)
        writer = imageio_ffmpeg.write_frames(
            str(tmp), size, pix_fmt_in="rgba", fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=6,
            macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-preset", "veryfast", "-movflags", "+faststart"])
        writer.send(None)
        # Stops do not apply: the video shows every step sample_steps takes.
        steps = sample_steps(model, idx, settings.replace(use_cache=True, stop=(), stop_at_eot=False),
                             generators[0], weights_of=layer)
        frames = _frames(scene, steps, tokenizer, prompt, tokens, frames_per_token, head, timings, new_ids)
        for n, frame in enumerate(frames, 1):
            t0 = time.perf_counter()
            writer.send(frame)
            timings.encode += time.perf_counter() - t0
            if progress is not None:
                progress(n, total_frames)
        t0 = time.perf_counter()
        writer.close()
        writer = None
        timings.encode += time.perf_counter() - t0
        os.replace(tmp, target)
    except BaseException as e:
        _abandon(writer, tmp)
        if isinstance(e, OSError):  # one sentence, not ffmpeg's command line
            raise OSError(_video_failure(e, target.parent)) from None
        raise
    finally:
        if steps is not None:
            steps.close()  # sample_steps' own cleanup (the model back in its training mode), even after an error
        if scene is not None:
            scene.close()
    return AnimationResult(path=target, frames=total_frames, tokens=new_ids, text=tokenizer.decode(new_ids),
                           seconds=time.perf_counter() - start, seed=settings.seed, model_seconds=timings.model,
                           draw_seconds=timings.draw, encode_seconds=timings.encode)


def _abandon(writer: Generator[None, Any, None] | None, tmp: Path) -> None:
    """After a failure: stop ffmpeg and delete the part file (the target is never touched)."""
    if writer is not None:
        try:
            writer.close()
        except Exception:  # ffmpeg already failed; the original error is the one to report
            pass
    tmp.unlink(missing_ok=True)


__all__ = ["AnimationResult", "FrameState", "CLASSIC_NOTE", "MAX_TOKENS", "check_layer_head", "check_output",
           "check_render_args", "parse_size", "render_animation"]
