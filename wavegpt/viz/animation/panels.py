"""The animation's panels, each building its own axes once and drawing itself per frame: the wave
packet of the token being read, the mixer's weights, the collapse of the next-token distribution and
the text so far (a new panel: a class here and a line in render.py's scene)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...model.embedding import WAVE_SAMPLES, WAVE_SPAN, WavePacketEmbedding
from ...model.gpt import WaveGPT
from ...model.mixers import mixer_entry
from .canvas import (
    ACCENT,
    BG,
    FG,
    GRID,
    HARMONICS,
    MUTED,
    WAVE,
    _Canvas,
    _clean,
    _nice_limit,
    _one_thread,
    _settle,
    _wrap,
)

MAX_FRAMES_PER_TOKEN = 30  # the wave packet travels 0.5 t per frame: the panel's time axis leaves room for it
CONTEXT_BARS = 32  # context positions shown in the interference panel
TOP_CANDIDATES = 10  # bars in the collapse panel
TEXT_CHARS = 400  # characters of text shown at most
CLASSIC_NOTE = "classic model: tokens are lookup vectors,\nnot wave packets (no signal to draw)"


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
        self.kind = mixer_entry(cfg).weight_kind(cfg)
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
