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

import math
import os
import re
import secrets
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .generation import sampling_inputs
from .model.embedding import WavePacketEmbedding
from .model.gpt import WaveGPT
from .sampling import SampleStep, SamplingSettings, sample_steps
from .tokenizer import WaveTokenizer

MAX_TOKENS = 2000  # ~4 min of video at 8 fps; more is almost surely a typo (and a long CPU wait)
MAX_FRAMES_PER_TOKEN = 30
MIN_FPS, MAX_FPS = 1, 60
MIN_SIZE, MAX_SIZE = (320, 180), (3840, 2160)
DEFAULT_SIZE = (1280, 720)
CONTEXT_BARS = 32  # context positions shown in the interference panel
TOP_CANDIDATES = 10  # bars in the collapse panel
TEXT_CHARS = 400  # characters of text shown at most
WAVE_SPAN, WAVE_SAMPLES = 50.0, 500  # the wave packet's time axis, t in [0, WAVE_SPAN]
CLASSIC_NOTE = "classic model: tokens are lookup vectors,\nnot wave packets (no signal to draw)"

# One colour scheme for every panel: blue for the model's quantities, orange for the
# token this frame is about (read, attended from, sampled, new in the text).
BG, PANEL, GRID = "#0d1117", "#161b22", "#30363d"
FG, MUTED = "#e6edf3", "#8b949e"
WAVE, ACCENT = "#58a6ff", "#ffa657"
GRIDLINE = "#262b32"  # GRID at 60% over PANEL, for gridlines drawn in numpy
HARMONICS = ("#7ee787", "#d2a8ff", "#ff7b72", "#79c0ff", "#f2cc60", "#a5d6ff")


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


# --- text ---------------------------------------------------------------------------------


def _clean(text: str, charset: frozenset[int]) -> str:
    """Drawable text: tabs as spaces, other control characters and glyphs the fonts lack as U+FFFD."""
    text = text.replace("\t", "    ").replace("\r", "")
    return "".join(c if c == "\n" or (c.isprintable() and ord(c) in charset) else "\ufffd" for c in text)


def _label(text: str, charset: frozenset[int], width: int = 12) -> str:
    """A token as a one-line label: newline as a return arrow, blank tokens as visible spaces."""
    text = _clean(text, charset).replace("\n", "\u21b5")
    if not text.strip():
        text = text.replace(" ", "\u2423") or "\u2205"
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _wrap(chars: list[tuple[str, bool]], cols: int) -> list[list[tuple[str, bool]]]:
    """Word-wrap (character, is_new) pairs into lines of at most `cols` characters.

    The flags travel with the characters, so the new token can be highlighted wherever
    the wrap puts it; a new newline is shown as a return arrow before the break.
    """
    lines: list[list[tuple[str, bool]]] = [[]]
    for ch, new in chars:
        if ch == "\n":
            if new:
                lines[-1].append(("\u21b5", True))
            lines.append([])
            continue
        line = lines[-1]
        if len(line) >= cols:
            spaces = [i for i, (c, _) in enumerate(line) if c == " "]
            cut = spaces[-1] + 1 if spaces and spaces[-1] > 0 else len(line)
            lines[-1], rest = line[:cut], line[cut:]
            lines.append(rest)
            line = rest
        line.append((ch, new))
    return lines


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


class _Sprites:
    """Text drawn straight into the frame from cached glyph bitmaps.

    Matplotlib lays out and rasterises every Text artist on every draw (about a millisecond
    each); a frame has some 60 changing labels, nearly all strings seen before (token
    labels, probabilities, lines of the text), so caching their bitmaps makes text cheap.
    Coordinates are image pixels (y downwards).
    """

    FACES = {"sans": dict(family="DejaVu Sans"), "bold": dict(family="DejaVu Sans", weight="bold"),
             "mono": dict(family="DejaVu Sans Mono")}

    def __init__(self, dpi: float):
        from matplotlib import font_manager
        from matplotlib.ft2font import FT2Font

        self.dpi = dpi
        self.fonts = {face: FT2Font(font_manager.findfont(font_manager.FontProperties(**props)))
                      for face, props in self.FACES.items()}  # own instances: set_text is stateful
        charsets = [frozenset(font.get_charmap()) for font in self.fonts.values()]
        self.charset = frozenset.intersection(*charsets)
        self.cache: dict[tuple[str, str, float], tuple[np.ndarray, int]] = {}
        self.colours: dict[str, np.ndarray] = {}
        self.advances: dict[tuple[str, str, float], float] = {}

    def metrics(self, face: str, size: float) -> tuple[float, float]:
        """Line ascent and descent in pixels at `size` points."""
        font = self.fonts[face]
        scale = size * self.dpi / 72 / font.units_per_EM
        return font.ascender * scale, -font.descender * scale


    def bitmap(self, text: str, face: str, size: float) -> tuple[np.ndarray, int]:
        """(coverage in [0, 1] (h, w), baseline row) of a string, rendered once."""
        key = (text, face, size)
        hit = self.cache.get(key)
        if hit is None:
            font = self.fonts[face]
            font.clear()
            font.set_size(size, self.dpi)
            font.set_text(text, 0.0)
            font.draw_glyphs_to_bitmap(antialiased=True)
            alpha = np.asarray(font.get_image(), dtype=np.float32) / 255.0
            hit = (alpha, alpha.shape[0] - 1 - round(font.get_descent() / 64))
            if len(self.cache) > 20_000:
                self.cache.clear()
            self.cache[key] = hit
        return hit

    def advance(self, text: str, face: str, size: float) -> float:
        """How far `text` moves the pen, in pixels (ink boxes alone would space words unevenly)."""
        key = (text, face, size)
        if key not in self.advances:
            font = self.fonts[face]
            font.clear()
            font.set_size(size, self.dpi)
            font.set_text(f"|{text}|", 0.0)
            wide = font.get_width_height()[0]
            font.set_text("||", 0.0)
            self.advances[key] = (wide - font.get_width_height()[0]) / 64
        return self.advances[key]

    def draw(self, frame: np.ndarray, text: str, x: float, y: float, *, face: str = "sans", size: float = 9,
             colour: str = FG, ha: str = "left", va: str = "baseline", vertical: bool = False) -> None:
        """Blend `text` into frame (H, W, 3) uint8; `vertical` reads bottom to top (x is the line's centre).

        Horizontal text is drawn word by word, so a sentence with one changing number
        re-renders only that number.
        """
        if not text.strip():
            return
        ascent, descent = self.metrics(face, size)
        if vertical:  # rotated 90 degrees counter-clockwise; va applies along the text
            alpha, base = self.bitmap(text, face, size)
            alpha = np.rot90(alpha)
            left = x - base + (ascent - descent) / 2
            top = {"top": y, "center": y - alpha.shape[0] / 2}.get(va, y - alpha.shape[0])
            self.blend(frame, alpha, int(round(left)), int(round(top)), colour)
            return
        words = text.split(" ")
        if len(words) == 1:
            width = float(self.bitmap(text, face, size)[0].shape[1])
            steps = [width]
        else:
            steps = [self.advance(word, face, size) if word else 0.0 for word in words]
            width = sum(steps) + self.advance(" ", face, size) * (len(words) - 1)
        gap = self.advance(" ", face, size) if len(words) > 1 else 0.0
        cursor = {"left": x, "center": x - width / 2}.get(ha, x - width)
        baseline = {"top": y + ascent, "center": y + (ascent - descent) / 2, "bottom": y - descent}.get(va, y)
        for word, step in zip(words, steps):
            if word:
                alpha, base = self.bitmap(word, face, size)
                self.blend(frame, alpha, int(round(cursor)), int(round(baseline - base)), colour)
            cursor += step + gap

    def blend(self, frame: np.ndarray, alpha: np.ndarray, left: int, top: int, colour: str) -> None:
        h, w = alpha.shape
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + h, frame.shape[0]), min(left + w, frame.shape[1])
        if y0 >= y1 or x0 >= x1:
            return
        a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]
        if colour not in self.colours:
            self.colours[colour] = _rgb(colour)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        region += (self.colours[colour] - region) * a
        frame[y0:y1, x0:x1] = region.astype(np.uint8)

    def fill(self, frame: np.ndarray, left: float, top: float, width: float, height: float, colour: str) -> None:
        """A solid rectangle (the highlight behind the new token)."""
        y0, x0 = max(int(round(top)), 0), max(int(round(left)), 0)
        y1, x1 = min(int(round(top + height)), frame.shape[0]), min(int(round(left + width)), frame.shape[1])
        if colour not in self.colours:
            self.colours[colour] = _rgb(colour)
        frame[y0:y1, x0:x1] = self.colours[colour].astype(np.uint8)


# --- the figure ---------------------------------------------------------------------------


def _nice_limit(value: float) -> float:
    """The smallest 1-1.5-2-3-5-7.5 step at or above value: axis limits that change rarely between frames."""
    value = max(float(value), 1e-9)
    exp = math.floor(math.log10(value))
    for m in (1.0, 1.5, 2.0, 3.0, 5.0, 7.5):
        if m * 10.0**exp >= value * (1 - 1e-9):
            return m * 10.0**exp
    return 10.0 ** (exp + 1)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the wave panel's tiny tensors: waking the thread pool costs more
    than the work (0.3 ms against 40 ms per packet measured on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _wave_peak(embedding: WavePacketEmbedding, span: float, max_tokens: int = 256) -> float:
    """The largest |s(t)| or |harmonic| among max_tokens evenly spaced tokens on [0, span].

    One scale for the whole video, so packets of different tokens compare by height; a
    sample of the vocabulary keeps this under ~0.1 s (a rare taller packet is clipped).
    """
    vocab = embedding.frequencies.shape[0]
    device = embedding.frequencies.device
    ids = torch.linspace(0, vocab - 1, min(vocab, max_tokens), device=device).round().long().unique()
    t = torch.linspace(0.0, span, 128, device=device)
    peak = 1e-3
    for chunk in ids.split(256):
        hs = embedding.harmonics(chunk, t)
        peak = max(peak, float(hs.abs().max()), float(hs.sum(dim=1).abs().max()))
    return peak


def _settle(current: float | None, needed: float) -> float:
    """Grow a limit at once, shrink it only to half or less (no flicker between neighbouring steps)."""
    if current is None or needed > current or needed <= 0.5 * current * (1 + 1e-9):
        return needed
    return current


@dataclass
class FrameState:
    """What one frame shows: the model's state at one step of decoding, read from `SampleStep`."""

    step: int  # 0-based index of the token being generated
    total: int  # tokens in the video
    grow: float  # in (0, 1]: eases the bars in over a token's frames
    shift: float  # moves the wave packet along t over a token's frames
    context: list[int]  # the window the model read (its newest token is the one being read)
    weights: np.ndarray  # (len(context),) the chosen layer and head's row of MixerWeights
    kind: str  # MixerWeights.kind
    g: float | None  # the Wave Network's global semantics at the newest token
    probs: np.ndarray  # (V,) the distribution the token was drawn from
    sampled: int
    text_old: str  # the text before this token
    text_new: str  # this token's text

    @property
    def query(self) -> int:
        return self.context[-1]


class _Canvas:
    """The shared drawing surface: one Agg figure, glyph sprites, pixel transforms, numpy bars and axes.

    Panels add their static artists to `fig` (drawn once into the cached background), mark
    the artists that change with `animate`, and draw everything else per frame in numpy.
    """

    def __init__(self, tokenizer: WaveTokenizer, size: tuple[int, int]):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.tokenizer, self.size = tokenizer, size
        w, h = size
        dpi = 100.0 * w / DEFAULT_SIZE[0]  # fonts and line widths scale with the frame width
        self.sprites = _Sprites(dpi)
        self.charset = self.sprites.charset
        self.labels: dict[int, str] = {}
        self.animated: list = []
        self.texts: list[tuple] = []  # this frame's text, blended in after the artists are drawn
        # +0.25 px: Agg truncates the figure size to whole pixels, so aim just above them
        self.fig = Figure(figsize=((w + 0.25) / dpi, (h + 0.25) / dpi), dpi=dpi, facecolor=BG)
        self.agg = FigureCanvasAgg(self.fig)

    def axes(self, rect: list[float]):
        ax = self.fig.add_axes(rect, facecolor=PANEL)
        ax.tick_params(colors=MUTED, labelsize=8)
        for spine in ax.spines.values():
            spine.set_color(GRID)
        ax.grid(color=GRID, lw=0.5, alpha=0.6)
        ax.set_axisbelow(True)
        return ax

    def animate(self, artist):
        """Mark an artist as redrawn every frame (kept out of the cached background)."""
        artist.set_animated(True)
        self.animated.append(artist)
        return artist

    def box(self, ax) -> tuple[float, float, float, float]:
        """An axes' (left, top, width, height) in image pixels (y downwards)."""
        x0, y0, x1, y1 = ax.get_position().extents
        w, h = self.size
        return x0 * w, (1 - y1) * h, (x1 - x0) * w, (y1 - y0) * h

    def pixel(self, ax, x: float, y: float, data: bool = True) -> tuple[float, float]:
        """Image pixel (y downwards) of a point in data (or axes) coordinates."""
        px, py = (ax.transData if data else ax.transAxes).transform((x, y))
        return float(px), self.size[1] - float(py)

    def to_pixels(self, ax, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels (y downwards) of many data points at once."""
        points = ax.transData.transform(np.column_stack([xs, ys]))
        return points[:, 0], self.size[1] - points[:, 1]

    def text(self, text: str, x: float, y: float, **style) -> None:
        """Queue a text for this frame (blended in after the artists are drawn)."""
        self.texts.append((text, x, y, style))

    def label(self, token: int) -> str:
        if token not in self.labels:
            self.labels[token] = _label(self.tokenizer.decode([token]), self.charset)
        return self.labels[token]

    def bars(self, frame: np.ndarray, ax, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray,
             colours: list[str]) -> None:
        """Bars between data corners, clipped to their axes (filled in numpy: Rectangle artists are slow)."""
        ax0, ay0 = self.to_pixels(ax, x0, y0)
        ax1, ay1 = self.to_pixels(ax, x1, y1)
        left, top, width, height = self.box(ax)
        xa, xb = np.maximum(np.minimum(ax0, ax1), left), np.minimum(np.maximum(ax0, ax1), left + width)
        ya, yb = np.maximum(np.minimum(ay0, ay1), top), np.minimum(np.maximum(ay0, ay1), top + height)
        for i, colour in enumerate(colours):
            if xb[i] > xa[i] and yb[i] > ya[i]:
                self.sprites.fill(frame, xa[i], ya[i], xb[i] - xa[i], yb[i] - ya[i], colour)

    def value_axis(self, frame: np.ndarray, ax, lo: float, hi: float, vertical: bool) -> None:
        """Gridlines and tick labels of a value axis whose limits change between frames."""
        from matplotlib.ticker import MaxNLocator

        left, top, width, height = self.box(ax)
        for v in MaxNLocator(nbins=5).tick_values(lo, hi):
            if not lo - 1e-12 <= v <= hi + 1e-12:
                continue
            label = f"{v:.6g}"
            if vertical:  # a y axis: horizontal gridlines, labels on the left
                _, y = self.pixel(ax, 0, v)
                self.sprites.fill(frame, left, round(y), width, 1, GRIDLINE)
                self.sprites.draw(frame, label, left - 4, y, size=8, colour=MUTED, ha="right", va="center")
            else:
                x, _ = self.pixel(ax, v, 0)
                self.sprites.fill(frame, round(x), top, 1, height, GRIDLINE)
                self.sprites.draw(frame, label, x, top + height + 4, size=8, colour=MUTED, ha="center", va="top")


class _Panel:
    """One part of the video: builds its static axes once, then per frame `update` (read the frame
    state, queue texts) and `draw` (numpy drawing into the frame). A new mixer swaps in its own
    panel without touching the others."""

    def __init__(self, canvas: _Canvas):
        self.canvas = canvas

    def update(self, state: FrameState) -> None:
        pass

    def draw(self, frame: np.ndarray) -> None:
        pass


class WavePanel(_Panel):
    """(1) The wave packet of the token being read: s(t) and each harmonic, one scale per video."""

    def __init__(self, canvas: _Canvas, model: WaveGPT):
        super().__init__(canvas)
        ax = self.ax = canvas.axes([0.055, 0.575, 0.40, 0.30])
        emb = model.embedding
        self.embedding = emb if isinstance(emb, WavePacketEmbedding) else None
        self.t = torch.linspace(0.0, WAVE_SPAN, WAVE_SAMPLES)
        self.waves: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
        x = self.t.numpy()
        ax.set_xlim(0, WAVE_SPAN)
        self.harmonic_lines: list = []
        self.signal_line = None
        if self.embedding is None:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, CLASSIC_NOTE, transform=ax.transAxes, ha="center", va="center", color=MUTED,
                    fontsize=12, style="italic", parse_math=False)
            return
        ax.set_xlabel("t", color=FG, fontsize=9, ha="left", va="top")
        ax.xaxis.set_label_coords(1.012, -0.025)
        ax.set_ylabel("amplitude", color=FG, fontsize=9)
        ax.yaxis.set_label_coords(-0.08, 0.5)
        ax.axhline(0, color=GRID, lw=0.8)
        for n in range(self.embedding.num_harmonics):
            (line,) = ax.plot(x, np.zeros_like(x), lw=0.9, alpha=0.85, color=HARMONICS[n % len(HARMONICS)],
                              label=f"harmonic {n + 1} (×{n + 1} f)")
            self.harmonic_lines.append(canvas.animate(line))
        (line,) = ax.plot(x, np.zeros_like(x), lw=2.2, color=WAVE, label="signal s(t)")
        self.signal_line = canvas.animate(line)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(4, self.embedding.num_harmonics + 1),
                  fontsize=7.5, frameon=False, labelcolor=FG, handlelength=1.5, columnspacing=1.0)
        peak = _wave_peak(self.embedding, WAVE_SPAN + 0.5 * MAX_FRAMES_PER_TOKEN)
        ax.set_ylim(-_nice_limit(peak * 1.1), _nice_limit(peak * 1.1))

    def _wave(self, token: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        """(s(t), harmonics) of a token on the panel's time axis; s is the harmonics' sum."""
        key = (token, shift)
        if key not in self.waves:
            assert self.embedding is not None
            device = self.embedding.frequencies.device
            with _one_thread():
                hs = self.embedding.harmonics(torch.tensor([token], device=device), (self.t + shift).to(device))[0]
            hs = hs.float().cpu().numpy()
            if len(self.waves) > 4096:
                self.waves.clear()
            self.waves[key] = (hs.sum(axis=0), hs)
        return self.waves[key]

    def update(self, state: FrameState) -> None:
        q = self.canvas.label(state.query)
        x, y = self.canvas.pixel(self.ax, 0, 1.03, data=False)
        if self.embedding is None or self.signal_line is None:
            self.canvas.text(f"Token '{q}' (classic model: no wave packet)", x, y, size=12)
            return
        self.canvas.text(f"Wave packet of '{q}'", x, y, size=12)
        s, hs = self._wave(state.query, state.shift)
        self.signal_line.set_ydata(s)
        for line, hn in zip(self.harmonic_lines, hs):
            line.set_ydata(hn)


# The mixer panel's y label for each kind of MixerWeights.
WEIGHT_LABELS = {"softmax": "attention weight (softmax)", "kernel": "kernel weight {kernel}(q·k)/√(t+1)",
                 "linear": "weight φ(q)·φ(k) / Σ ({kernel})", "phase": "phase α against G (rad)"}


class MixerPanel(_Panel):
    """(2) The mixer's weights for the newest query over (the last CONTEXT_BARS positions of) the
    window: the chosen layer and head's row of the MixerWeights the model returned."""

    def __init__(self, canvas: _Canvas, model: WaveGPT, layer: int, head: int):
        super().__init__(canvas)
        cfg = model.config
        ax = self.ax = canvas.axes([0.055, 0.165, 0.40, 0.28])
        xs = np.arange(CONTEXT_BARS)
        self.heights = np.zeros(CONTEXT_BARS)
        self.ctx: list[int] = []
        self.lo: float | None = None
        self.hi: float | None = None
        ax.set_xlim(-0.6, CONTEXT_BARS - 0.4)
        ax.set_xticks(xs, [""] * CONTEXT_BARS)
        ax.tick_params(axis="x", length=2)
        ax.set_yticks([])  # the weight axis is drawn per frame (see draw)
        ax.grid(False)
        self.kind = mixer_weights_kind(cfg)
        ax.set_ylabel(WEIGHT_LABELS[self.kind].format(kernel=cfg.kernel), color=FG, fontsize=9)
        ax.yaxis.set_label_coords(-0.085, 0.5)
        if self.kind == "phase":
            title = f"Wave Network: layer {layer}, dims group {head} — phases and G"
        else:
            title = f"Interference: layer {layer}, head {head}" + (" — linear attention" if self.kind == "linear"
                                                                    else "")
        ax.set_title(title, color=FG, fontsize=12, loc="left", y=1.02)

    def update(self, state: FrameState) -> None:
        weights, context = state.weights, state.context
        q = self.canvas.label(state.query)
        n = min(len(weights), len(context), CONTEXT_BARS)
        shown = weights[len(weights) - n:]
        self.ctx = context[len(context) - n:]
        self.heights = shown * state.grow
        self.hi = _settle(self.hi, _nice_limit(float(shown.max()) * 1.05) if n else 1.0)
        low = float(shown.min()) if n else 0.0
        self.lo = _settle(self.lo, -_nice_limit(-low * 1.05) if low < 0 else 0.0)
        hidden = len(weights) - n
        x, y = self.canvas.pixel(self.ax, 0.5, -0.3, data=False)
        if self.kind == "phase":  # no weights over positions: each token's phase against the prefix's G
            self.hi, self.lo = math.pi, 0.0  # phases lie in [0, pi]
            g_text = f"G = {state.g:.3g}" if state.g is not None else "G"
            self.canvas.text(f"{g_text} at the newest ('{q}', orange); bars: phase of each of {len(weights)} tokens"
                             + (f" ({hidden} not shown)" if hidden > 0 else ""),
                             x, y, size=8, colour=MUTED, ha="center", va="top")
        else:
            self.canvas.text(f"context window of {len(weights)} tokens; the newest ('{q}', orange) attends"
                             + (f"; {hidden} earlier not shown" if hidden > 0 else ""), x, y, size=8, colour=MUTED,
                             ha="center", va="top")
        self.ax.set_ylim(self.lo, self.hi)  # only transData: no redraw

    def draw(self, frame: np.ndarray) -> None:
        canvas, ax = self.canvas, self.ax
        canvas.value_axis(frame, ax, self.lo or 0.0, self.hi or 1.0, vertical=True)
        n = len(self.ctx)
        if not n:
            return
        pos = np.arange(n, dtype=np.float64)
        colours = [WAVE] * (n - 1) + [ACCENT]
        canvas.bars(frame, ax, pos - 0.4, pos + 0.4, np.zeros(n), self.heights[:n], colours)
        xs, _ = canvas.to_pixels(ax, pos, np.zeros(n))
        _, bottom = canvas.pixel(ax, 0, 0, data=False)
        for i, (tok, x) in enumerate(zip(self.ctx, xs)):
            canvas.sprites.draw(frame, canvas.label(tok), x, bottom + 4, size=7,
                                colour=ACCENT if i == n - 1 else MUTED, va="top", vertical=True)


class CollapsePanel(_Panel):
    """(3) The ten likeliest next tokens under the distribution the token was drawn from, the
    sampled one highlighted (swapped in if it ranks lower)."""

    def __init__(self, canvas: _Canvas):
        super().__init__(canvas)
        ax = self.ax = canvas.axes([0.63, 0.575, 0.34, 0.30])
        self.rows = np.arange(TOP_CANDIDATES)[::-1]  # the likeliest on top
        self.widths = np.zeros(TOP_CANDIDATES)
        self.limit: float | None = None
        ax.set_ylim(-0.6, TOP_CANDIDATES - 0.4)
        ax.set_yticks(self.rows, [""] * TOP_CANDIDATES)
        ax.tick_params(axis="y", length=2)
        ax.set_xticks([])  # the probability axis is drawn per frame (see draw)
        ax.grid(False)
        ax.set_xlabel("probability (after temperature, top-k, top-p)", color=FG, fontsize=9)
        ax.xaxis.set_label_coords(0.5, -0.09)
        ax.set_title("Collapse: next-token distribution", color=FG, fontsize=12, loc="left", y=1.02)

    def update(self, state: FrameState) -> None:
        probs, sampled = state.probs, state.sampled
        order = np.argsort(-probs, kind="stable")[:TOP_CANDIDATES]
        rank = int((probs > probs[sampled]).sum()) + 1
        if sampled not in order:
            order[-1] = sampled
        self.widths = probs[order] * state.grow
        self.limit = _settle(self.limit, _nice_limit(float(probs[order[0]]) * 1.15))
        self.ax.set_xlim(0, self.limit)
        self.order, self.probs, self.sampled = order, probs, sampled
        nz = probs[probs > 0]
        entropy = float(-(nz * np.log(nz)).sum())
        x, y = self.canvas.pixel(self.ax, 0.5, -0.2, data=False)
        self.canvas.text(f"sampled '{self.canvas.label(sampled)}': p = {float(probs[sampled]):.3f}, rank {rank} · "
                         f"entropy {entropy:.2f} nats", x, y, size=8, colour=MUTED, ha="center", va="top")

    def draw(self, frame: np.ndarray) -> None:
        canvas, ax = self.canvas, self.ax
        canvas.value_axis(frame, ax, 0.0, self.limit or 1.0, vertical=False)
        rows = self.rows.astype(np.float64)
        chosen = [bool(tok == self.sampled) for tok in self.order]
        canvas.bars(frame, ax, np.zeros(len(rows)), self.widths, rows - 0.375, rows + 0.375,
                    [ACCENT if c else WAVE for c in chosen])
        ends, ys = canvas.to_pixels(ax, self.widths, rows)
        left, _ = canvas.pixel(ax, 0, 0, data=False)
        for tok, c, x, y in zip(self.order, chosen, ends, ys):
            colour = ACCENT if c else FG
            canvas.sprites.draw(frame, canvas.label(int(tok)), left - 5, y, size=9, colour=colour, ha="right",
                                va="center")
            canvas.sprites.draw(frame, f"{float(self.probs[tok]):.3f}", x + 3, y, size=8, colour=colour,
                                va="center")


class TextPanel(_Panel):
    """(4) The text so far (its last TEXT_CHARS characters), word-wrapped, the new token highlighted."""

    def __init__(self, canvas: _Canvas):
        super().__init__(canvas)
        ax = self.ax = canvas.axes([0.53, 0.04, 0.44, 0.36])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_title("Text so far (new token highlighted)", color=FG, fontsize=12, loc="left", y=1.02)
        self.mono_size = 11.0
        left, top, width, height = canvas.box(ax)
        pad = 0.025 * width
        self.cell_w = canvas.sprites.advance("M" * 50, "mono", self.mono_size) / 50
        ascent, descent = canvas.sprites.metrics("mono", self.mono_size)
        self.line_h = 1.25 * (ascent + descent)
        self.origin = (left + pad, top + pad)
        self.cols = max(8, int((width - 2 * pad) / self.cell_w))
        self.rows = max(1, int((height - 2 * pad) / self.line_h))
        self.old = self.new = ""

    def update(self, state: FrameState) -> None:
        self.old, self.new = state.text_old, state.text_new

    def draw(self, frame: np.ndarray) -> None:
        sprites, charset = self.canvas.sprites, self.canvas.charset
        old, new = _clean(self.old, charset), _clean(self.new, charset)
        keep = max(0, TEXT_CHARS - len(new))
        old = ("\u2026" + old[len(old) - keep + 1:]) if len(old) > keep else old
        chars = [(c, False) for c in old] + [(c, True) for c in new]
        lines = _wrap(chars, self.cols)[-self.rows:]
        ascent, _ = sprites.metrics("mono", self.mono_size)
        x0, y0 = self.origin
        for row, line in enumerate(lines):
            top = y0 + row * self.line_h
            baseline = top + (self.line_h - ascent) / 4 + ascent
            new_cols = [i for i, (_, f) in enumerate(line) if f]
            if new_cols:
                c0, c1 = new_cols[0], new_cols[-1] + 1
                sprites.fill(frame, x0 + c0 * self.cell_w - 1, top, (c1 - c0) * self.cell_w + 2, self.line_h, ACCENT)
            # Each run of non-blank characters is a cached word placed at its own column:
            # lines differ from frame to frame, their words mostly do not.
            col = 0
            while col < len(line):
                if line[col][0] == " ":
                    col += 1
                    continue
                end, flag = col, line[col][1]
                while end < len(line) and line[end][0] != " " and line[end][1] == flag:
                    end += 1
                word = "".join(c for c, _ in line[col:end])
                alpha, base = sprites.bitmap(word, "mono", self.mono_size)
                sprites.blend(frame, alpha, int(round(x0 + col * self.cell_w)), int(round(baseline - base)),
                              BG if flag else FG)
                col = end


def mixer_weights_kind(cfg) -> str:
    """The kind of MixerWeights a model's mixers return (see wavegpt.model.attention.MixerWeights)."""
    if cfg.model_type == "wave" and cfg.attention.startswith("wave_network"):
        return "phase"
    if cfg.model_type == "wave" and cfg.attention == "pure_wave":
        return "linear" if cfg.mode == "linear" else "kernel"
    return "softmax"


def _mixer_name(cfg) -> str:
    if cfg.model_type == "classic":
        return "softmax attention (classic)"
    if cfg.attention == "interference":
        return "interference attention"
    if cfg.attention.startswith("wave_network"):
        op = "modulation" if cfg.attention.endswith("modulation") else "interference"
        return f"Wave Network mixer ({op})"
    return f"pure wave attention ({cfg.kernel}, {cfg.mode})"


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
        canvas.fig.text(0.5, 0.932, f"preset {cfg.preset} · {_mixer_name(cfg)} · "
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
    import shutil

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
    idx, settings, generators = sampling_inputs(model, tokenizer, prompt, settings)

    import imageio_ffmpeg

    _sweep_stale_parts(target)
    tmp = _temp_path(target)
    try:
        tmp.touch(exist_ok=False)  # fails now, not after minutes of rendering, if the folder is read-only
    except OSError as e:
        raise ValueError(f"Cannot write to the output folder {str(tmp.parent)!r} ({e.strerror}).") from None

    writer: Generator[None, Any, None] | None = None
    steps: Iterator[SampleStep] | None = None
    scene: _Scene | None = None
    new_ids: list[int] = []
    model_s = draw_s = encode_s = 0.0
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
            model_s += time.perf_counter() - t0
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
                t1 = time.perf_counter()
                writer.send(frame)
                t2 = time.perf_counter()
                draw_s += t1 - t0
                encode_s += t2 - t1
                if progress is not None:
                    progress(step * frames_per_token + sub + 1, total_frames)
            text_before = text_now
        t0 = time.perf_counter()
        writer.close()
        writer = None
        encode_s += time.perf_counter() - t0
        os.replace(tmp, target)
    except BaseException as e:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # ffmpeg already failed; the original error is the one to report
                pass
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # one sentence, not ffmpeg's command line
            raise OSError(_video_failure(e, target.parent)) from None
        raise
    finally:
        if steps is not None:
            steps.close()  # sample_steps' own cleanup (the model back in its training mode), even after an error
        if scene is not None:
            scene.close()
    return AnimationResult(path=target, frames=total_frames, tokens=new_ids, text=tokenizer.decode(new_ids),
                           seconds=time.perf_counter() - start, seed=settings.seed, model_seconds=model_s,
                           draw_seconds=draw_s, encode_seconds=encode_s)


__all__ = [
    "AnimationResult",
    "FrameState",
    "CLASSIC_NOTE",
    "MAX_TOKENS",
    "check_layer_head",
    "check_output",
    "check_render_args",
    "parse_size",
    "render_animation",
]
