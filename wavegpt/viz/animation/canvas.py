"""The animation's drawing surface: one Agg figure, text drawn from cached glyph bitmaps, numpy bars and
axes, and the colour scheme every panel uses (see render.py for how a frame is made)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from ...tokenizer import WaveTokenizer

DEFAULT_SIZE = (1280, 720)

# One colour scheme for every panel: blue for the model's quantities, orange for the
# token this frame is about (read, attended from, sampled, new in the text).
BG, PANEL, GRID = "#0d1117", "#161b22", "#30363d"
FG, MUTED = "#e6edf3", "#8b949e"
WAVE, ACCENT = "#58a6ff", "#ffa657"
GRIDLINE = "#262b32"  # GRID at 60% over PANEL, for gridlines drawn in numpy
HARMONICS = ("#7ee787", "#d2a8ff", "#ff7b72", "#79c0ff", "#f2cc60", "#a5d6ff")

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


def _settle(current: float | None, needed: float) -> float:
    """Grow a limit at once, shrink it only to half or less (no flicker between neighbouring steps)."""
    if current is None or needed > current or needed <= 0.5 * current * (1 + 1e-9):
        return needed
    return current


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
