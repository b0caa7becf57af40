"""The wave plots of a trained model (wavegpt-plots): one function per plot over a `WaveData`, and the
PLOTS registry that names them (PNG files, matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mpl_toolkits.mplot3d import Axes3D  # noqa: E402, F401 -- registers the 3d projection

from ..checkpoint import read_config, resolve_checkpoint  # noqa: E402
from ..generation import load_resolved  # noqa: E402
from ..model.embedding import WAVE_SAMPLES, WAVE_SPAN  # noqa: E402
from ..model.mixers import mixer_entry  # noqa: E402
from ..ops.rotary import rotary_angles  # noqa: E402
from ..ownership import check_names_free  # noqa: E402
from .curves import PNG_METADATA, plot_learning_curve, read_metrics  # noqa: E402

DEFAULT_SAMPLE_TEXT = ("ROMEO:\nBut, soft! what light through yonder window breaks?\n"
                       "It is the east, and Juliet is the sun.")
DPI = 120
SAMPLE_TOKENS = 6  # tokens of the sample text drawn one by one (packets, polar, complex plane)
SURFACE_TOKENS = 16  # tokens of the sample text in the 3-D surface
LABELLED_POSITIONS = 40  # the interference matrix gets token labels up to this many positions
SPECTRO_SPAN = 200.0  # t per token in the spectrogram: long enough to resolve the slowest base frequencies
# One colour per sample token, the same in every plot; sequential maps for magnitudes,
# a diverging one for signed amplitudes.
TOKEN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
SEQUENTIAL, ENERGY, DIVERGING = "viridis", "magma", "coolwarm"


def _charset() -> frozenset[int]:
    """Code points the default font can draw, so token labels never trigger missing-glyph boxes."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    global _CHARSET
    if _CHARSET is None:
        _CHARSET = frozenset(get_font(findfont(FontProperties())).get_charmap())
    return _CHARSET


_CHARSET: frozenset[int] | None = None


def token_label(text: str, width: int = 10) -> str:
    """A token as a short one-line label: newline as ↵, spaces at its ends as ␣."""
    charset = _charset()
    text = text.replace("\t", "    ").replace("\r", "")
    text = "".join(c if c == "\n" or (c.isprintable() and ord(c) in charset) else "\ufffd" for c in text)
    text = text.replace("\n", "\u21b5")
    if not text.strip():
        text = text.replace(" ", "\u2423") or "\u2205"
    else:  # " king" and "king" are different tokens: show the spaces around a word
        core = text.strip(" ")
        start = text.index(core)
        text = "\u2423" * start + core + "\u2423" * (len(text) - start - len(core))
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white", metadata=PNG_METADATA)
    plt.close(fig)
    return path


def _find_metrics(checkpoint_folder: Path, resolved: Path) -> Path | None:
    """A model folder inside a run (run/best) has the run's metrics one level up."""
    for candidate in (resolved.parent / "metrics.jsonl", checkpoint_folder / "metrics.jsonl"):
        if candidate.is_file():
            return candidate
    return None


# What the interference plot's colours mean, for each kind of MixerWeights.
WEIGHT_MEANINGS = {
    "softmax": "softmax weight",
    "kernel": "weight {kernel}(q·k) / √(t+1)",
    "linear": "linear-attention weight φ(q)·φ(k) / Σ ({kernel})",
    "phase": "phase α of key token against G at the query (rad, mean over the head's dims)",
}


def interference_matrix(model, token_ids: list[int], layer: int = -1, head: int = 0) -> tuple[np.ndarray, str]:
    """The (T, T) weights with which each query position mixes the key positions of one head.

    Read from the forward pass itself (`model(ids, weights_of=layer)`, the mixer's own
    MixerWeights), so the plot shows what the model computes, never a re-derivation:
    interference: softmax over the causal scores normalize(q + q_phase) . normalize(k + k_phase) / temperature;
    pure wave, quadratic: kernel(q . k) / sqrt(t + 1) on the causal scores (rows need not sum to 1);
    pure wave, linear: phi(q) . phi(k) causally masked, divided by its row sum (the effective weights);
    classic: scaled dot-product softmax; the Wave Network: each key token's phase against the
    query's global semantics G. Future positions are NaN. Returns (matrix, what it shows).
    """
    cfg = model.config
    with torch.no_grad():
        device = next(model.parameters()).device
        _, _, mixed = model(torch.tensor([token_ids], dtype=torch.long, device=device), weights_of=layer)
    out = mixed.weights[0, head].float().cpu().numpy().copy()
    T = out.shape[0]
    out[np.triu(np.ones((T, T), dtype=bool), 1)] = np.nan
    meaning = mixer_entry(cfg).meaning
    what = meaning(cfg) if meaning is not None else WEIGHT_MEANINGS[mixed.kind].format(kernel=cfg.kernel)
    return out, what


def plot_wave_model(
    checkpoint_folder: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path | None = None,
    sample_text: str = DEFAULT_SAMPLE_TEXT,
    max_tokens_heatmap: int = 64,
) -> dict[str, Path]:
    """Write the ten wave plots of a trained model (see PLOT_NAMES) as PNGs into out_dir.

    Metrics come from `metrics_path`, else from the run folder around the checkpoint
    (`run/metrics.jsonl` for `run/best`); without any, learning_curve.png is skipped. A classic
    checkpoint has no wave packets: its learning curve is still written, then ValueError.
    `max_tokens_heatmap` caps the rows of the frequency heatmap and the positions of the
    interference matrix. Returns {plot name: path} for the files written.
    """
    checkpoint_folder = Path(checkpoint_folder)
    resolved = resolve_checkpoint(checkpoint_folder)
    if max_tokens_heatmap < 2:
        raise ValueError(f"max_tokens_heatmap must be at least 2, not {max_tokens_heatmap}.")
    if not sample_text:
        raise ValueError("The sample text is empty; the wave plots need at least one token.")
    if metrics_path is not None and not Path(metrics_path).is_file():
        raise ValueError(f"Metrics file {metrics_path} does not exist.")
    metrics = Path(metrics_path) if metrics_path is not None else _find_metrics(checkpoint_folder, resolved)
    out_dir = Path(out_dir)
    check_names_free(out_dir, [f"{name}.png" for name in PLOT_NAMES])  # replaces only its own plots
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if metrics is not None and read_metrics(metrics):
        written["learning_curve"] = plot_learning_curve(metrics, out_dir / "learning_curve.png")
    if read_config(resolved).model_type == "classic":
        note = f" Its learning curve is in {written['learning_curve']}." if written else ""
        raise ValueError(f"{checkpoint_folder} is a classic model: it has no wave packets to plot.{note}")

    model, tokenizer = load_resolved(resolved, "cpu")
    ids = tokenizer.encode(sample_text)
    if not ids:
        raise ValueError("The sample text encodes to no tokens; the wave plots need at least one.")
    data = WaveData(model, tokenizer, ids, max_tokens_heatmap)
    # Token text is shown literally: a "$" in a token must not start mathtext.
    with plt.rc_context({"text.parse_math": False}):
        for name, plot in PLOTS.items():
            written[name] = _save(plot(data), out_dir / f"{name}.png")
    return written


class WaveData:
    """What the wave plots share: the embedding's tensors as numpy, the sample tokens and their labels."""

    def __init__(self, model, tokenizer, ids: list[int], max_tokens: int):
        self.model, self.tokenizer = model, tokenizer
        emb = model.embedding
        self.emb = emb
        self.cfg = model.config
        self.freq = emb.frequencies.detach().float().cpu().numpy()  # (V, W)
        self.phase = emb.phases.detach().float().cpu().numpy()  # (V, W)
        self.amp = emb.amplitudes.detach().float().cpu().numpy()  # (V, W, H)
        self.rate, self.rate_kind = self._position_rates(emb, model.config)
        self.ids = ids[: min(max_tokens, self.cfg.block_size)]  # the sequence the model reads
        self.which = "first " if len(self.ids) < len(ids) else ""
        self.max_tokens = max_tokens
        self._labels: dict[int, str] = {}
        # Distinct tokens in order of appearance, words before blanks and punctuation.
        distinct = list(dict.fromkeys(ids))
        wordy = [i for i in distinct if any(c.isalnum() for c in tokenizer.decode([i]))]
        self.samples = (wordy + [i for i in distinct if i not in wordy])[:SAMPLE_TOKENS]
        self.t = torch.linspace(0.0, WAVE_SPAN, WAVE_SAMPLES)
        self.subtitle = (f"preset {self.cfg.preset} · {self.cfg.num_waves} waves × {self.cfg.num_harmonics} "
                         f"harmonics · vocabulary {self.cfg.vocab_size}")

    @staticmethod
    def _position_rates(emb, config):
        """(rates, kind): the packet's learned rates (W, H) in the seed-faithful form, the fixed
        rotary rates of the query/key wave pairs (pairs, 1) when position is rotary, else None."""
        if emb.position_rate is not None:
            return emb.position_rate.detach().float().cpu().numpy(), "packet"
        if config.position == "rotary":
            n = config.num_waves // 2
            return rotary_angles(n, 1, 1, config.rope_base, torch.device("cpu"))[0].numpy()[:, None], "rotary"
        return None, "none"

    def label(self, token: int, width: int = 10) -> str:
        if token not in self._labels:
            self._labels[token] = self.tokenizer.decode([token])
        return token_label(self._labels[token], width)

    def signal(self, token_ids: list[int], t) -> np.ndarray:
        return self.emb.signal(torch.tensor(token_ids, dtype=torch.long), t).float().cpu().numpy()

    def title(self, fig: plt.Figure, title: str, fontsize: float = 13) -> None:
        fig.suptitle(title, fontsize=fontsize, fontweight="bold")
        fig.text(0.5, 0.005, self.subtitle, ha="center", va="bottom", fontsize=8, color="#555555")

    def heatmap_tokens(self) -> list[int]:
        """The sample text's tokens, commonest first, then the tokenizer's earliest multi-character
        tokens: BPE learns merges in order of frequency, so those are the corpus's commonest words."""
        counts: dict[int, int] = {}
        for i in self.ids:
            counts[i] = counts.get(i, 0) + 1
        chosen = sorted(counts, key=lambda i: -counts[i])[: self.max_tokens]
        for i in range(self.cfg.vocab_size):
            if len(chosen) >= min(self.max_tokens, self.cfg.vocab_size):
                break
            if i not in counts and i != self.tokenizer.eot_id and len(self.tokenizer.decode([i]).strip()) >= 2:
                chosen.append(i)
        return chosen


def frequency_heatmap(wave: WaveData) -> plt.Figure:
    tokens = wave.heatmap_tokens()
    data = wave.freq[tokens]
    n, w = data.shape
    fig, ax = plt.subplots(figsize=(max(7.0, 0.22 * w + 3), max(4.5, 0.17 * n + 2)))
    im = ax.imshow(data, aspect="auto", cmap=SEQUENTIAL, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="base frequency f (rad per unit t)")
    ax.set_yticks(range(n))
    ax.set_yticklabels([wave.label(i, 12) for i in tokens], fontsize=max(5.0, min(9.0, 400 / n)))
    step = max(1, w // 24)
    ax.set_xticks(range(0, w, step))
    ax.set_xlabel("wave w")
    ax.set_ylabel("token (the sample text's, commonest first; then early BPE merges)")
    ax.set_title(f"Base frequencies f of {n} tokens")
    wave.title(fig, "Token × wave frequency heatmap")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def phase_distribution(wave: WaveData) -> plt.Figure:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    wrapped = np.angle(np.exp(1j * wave.phase.ravel()))
    ax1.hist(wrapped, bins=48, range=(-np.pi, np.pi), color=TOKEN_COLOURS[0], edgecolor="white", linewidth=0.4)
    ax1.set_xlim(-np.pi, np.pi)
    ax1.set_xticks([-np.pi, -np.pi / 2, 0, np.pi / 2, np.pi])
    ax1.set_xticklabels(["−π", "−π/2", "0", "π/2", "π"])
    ax1.set_xlabel("phase φ, wrapped to [−π, π] (rad)")
    ax1.set_ylabel("count (tokens × waves)")
    ax1.set_title(f"Token phases ({wrapped.size} values)")
    if wave.rate is None:
        ax2.text(0.5, 0.5, "no positional phase:\nposition comes from the attention itself",
                 ha="center", va="center", transform=ax2.transAxes)
        ax2.set_axis_off()
        wave.title(fig, "Phase distribution")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        return fig
    rates = wave.rate.ravel()
    positive = bool((rates > 0).all())
    if positive:
        lo, hi = np.log10(rates.min()), np.log10(rates.max())
        bins = np.logspace(lo - 0.05, hi + 0.05, 30)
        ax2.set_xscale("log")
    else:
        bins = 30
    for n in range(wave.rate.shape[1]):
        label = f"harmonic {n + 1}" if wave.rate_kind == "packet" else "query/key wave pairs"
        ax2.hist(wave.rate[:, n], bins=bins, alpha=0.6, label=label,
                 color=TOKEN_COLOURS[(n + 1) % len(TOKEN_COLOURS)])
    ax2.set_xlabel("positional rate ω (rad per token position)")
    ax2.set_ylabel("count (waves)" if wave.rate_kind == "packet" else "count (wave pairs)")
    ax2.set_title("Positional phase rates ω" + (" (rotary, in the interference)" if wave.rate_kind == "rotary"
                                               else " (in the packet)"))
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    wave.title(fig, "Phase distribution")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def harmonic_profiles(wave: WaveData) -> plt.Figure:
    H = wave.amp.shape[2]
    harmonics = np.arange(1, H + 1)
    per_token = np.abs(wave.amp).mean(axis=1)  # (V, H): mean |A| over waves
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    mean, std = per_token.mean(axis=0), per_token.std(axis=0)
    lo, hi = np.percentile(per_token, [10, 90], axis=0)
    ax1.fill_between(harmonics, lo, hi, color="#888888", alpha=0.25, label="10th–90th percentile")
    ax1.errorbar(harmonics, mean, yerr=std, fmt="o-", color="black", capsize=4, label="mean ± std")
    ax1.set_title(f"All {per_token.shape[0]} tokens")
    for j, token in enumerate(wave.samples):
        ax2.plot(harmonics, per_token[token], "o-", color=TOKEN_COLOURS[j], label=f"'{wave.label(token)}'")
    ax2.set_title("Sample tokens")
    for ax in (ax1, ax2):
        ax.set_xticks(harmonics)
        ax.set_xlabel("harmonic n (frequency n·f)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("mean |A| over waves")
    wave.title(fig, "Harmonic amplitude profiles")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def wave_packets(wave: WaveData) -> plt.Figure:
    n = len(wave.samples)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.3 * rows + 1.2), sharex=True, sharey=True, squeeze=False)
    signals = wave.signal(wave.samples, wave.t)
    x = wave.t.numpy()
    for j, (token, s) in enumerate(zip(wave.samples, signals)):
        ax = axes.flat[j]
        ax.axhline(0, color="#999999", lw=0.6)
        ax.axvline(2 * np.pi, color="#999999", ls=":", lw=1)
        ax.plot(x, s, color=TOKEN_COLOURS[j], lw=1.6)
        ax.set_title(f"token {wave.label(token, 16)!r} (id {token})", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("t")
    for ax in axes[:, 0]:
        ax.set_ylabel("s(t)")
    wave.title(fig, "Wave packets s(t) = Σ_w Σ_n A_wn sin(n f_w t + φ_w) of sample tokens\n"
                     "(dotted line: t = 2π, where the embedding samples each packet)", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def polar_phases(wave: WaveData) -> plt.Figure:
    fig = plt.figure(figsize=(7.5, 7))
    ax = fig.add_subplot(projection="polar")
    radius = np.sqrt((wave.amp**2).sum(axis=2))  # (V, W): a wave's amplitude over its harmonics
    theta_circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(theta_circle, np.ones_like(theta_circle), color="#999999", ls="--", lw=1, label="unit circle")
    for j, token in enumerate(wave.samples):
        theta = np.angle(np.exp(1j * wave.phase[token]))
        r = radius[token]
        ax.vlines(theta, 0, r, color=TOKEN_COLOURS[j], alpha=0.35, lw=1)
        ax.scatter(theta, r, s=22, color=TOKEN_COLOURS[j], label=f"'{wave.label(token)}'", zorder=3)
    ax.set_rlabel_position(100)
    ax.set_title("Phases φ of the sample tokens' waves\n(angle φ, radius ‖A_w‖ = √Σ_n A_wn²)", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.text(0.5, 0.01, wave.subtitle, ha="center", va="bottom", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def complex_plane(wave: WaveData) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.5, 7))
    z_all = wave.amp.sum(axis=2) * np.exp(1j * wave.phase)  # (V, W): A·e^{iφ} summed over harmonics
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="#999999", ls="--", lw=1, label="unit circle")
    ax.axhline(0, color="#bbbbbb", lw=0.6)
    ax.axvline(0, color="#bbbbbb", lw=0.6)
    extent = 1.1
    for j, token in enumerate(wave.samples):
        z = z_all[token]
        ax.scatter(z.real, z.imag, s=22, color=TOKEN_COLOURS[j], alpha=0.8, label=f"'{wave.label(token)}'")
        mean = z.mean()
        ax.scatter([mean.real], [mean.imag], s=160, marker="*", color=TOKEN_COLOURS[j], edgecolor="black",
                   linewidth=0.6, zorder=4)
        extent = max(extent, float(np.abs(z).max()) * 1.1)
    ax.scatter([], [], s=120, marker="*", color="white", edgecolor="black", label="mean over waves")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("Re  (Σ_n A_wn) cos φ_w")
    ax.set_ylabel("Im  (Σ_n A_wn) sin φ_w")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    ax.set_title("Each wave of the sample tokens as A·e^{iφ} (harmonics summed)", fontsize=11)
    fig.text(0.5, 0.01, wave.subtitle, ha="center", va="bottom", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def spectrogram(wave: WaveData) -> plt.Figure:
    """STFT of the sample text's tokens' signals laid end to end, SPECTRO_SPAN of t each."""
    max_rad = float(wave.freq[wave.ids].max() * wave.amp.shape[2])
    fs = max(4.0, 4 * max_rad / (2 * np.pi))  # samples per unit t: twice Nyquist for the top harmonic
    per = int(SPECTRO_SPAN * fs)
    t = torch.arange(per, dtype=torch.float32) / fs
    signal = wave.signal(wave.ids, t).ravel()
    nperseg, nfft = per, 2 * per  # one token per window; zero padding smooths the frequency axis
    hop = max(1, nperseg // 4)
    window = np.hanning(nperseg)
    starts = np.arange(0, max(1, signal.size - nperseg + 1), hop)
    frames = np.stack([signal[s : s + nperseg] * window for s in starts])
    power = np.abs(np.fft.rfft(frames, n=nfft, axis=1)) ** 2
    db = 10 * np.log10(power + power.max() * 1e-8)
    omega = 2 * np.pi * np.fft.rfftfreq(nfft, d=1 / fs)  # rad per unit t, the unit of f
    centres = (starts + nperseg / 2) / per  # in tokens
    fig, ax = plt.subplots(figsize=(11, 5))
    top = min(omega[-1], max_rad * 1.15)
    keep = omega <= top
    mesh = ax.pcolormesh(centres, omega[keep], db[:, keep].T, cmap=ENERGY, shading="nearest",
                         vmin=db.max() - 50, vmax=db.max())
    fig.colorbar(mesh, ax=ax, label="power (dB)")
    n = len(wave.ids)
    ax.set_xlim(0, n)
    if n <= LABELLED_POSITIONS:
        ax.set_xticks(np.arange(n) + 0.5)
        ax.set_xticklabels([wave.label(i, 8) for i in wave.ids], rotation=90, fontsize=7)
        ax.set_xlabel(f"token of the sample text (each held for t ∈ [0, {SPECTRO_SPAN:g}))")
    else:
        ax.set_xlabel("token position in the sample text")
    ax.set_ylabel("angular frequency n·f (rad per unit t)")
    ax.set_title(f"Spectrogram of the sample text's {wave.which}{n} tokens, signals s(t) end to end")
    fig.tight_layout()
    return fig


def interference_pattern(wave: WaveData) -> plt.Figure:
    layer = wave.cfg.n_layers - 1
    weights, what = interference_matrix(wave.model, wave.ids, layer=layer, head=0)
    n = len(wave.ids)
    size = max(6.5, min(12.0, 0.2 * n + 4))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    cmap = plt.get_cmap(SEQUENTIAL).with_extremes(bad="#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(weights), cmap=cmap, interpolation="nearest", vmin=0)
    fig.colorbar(im, ax=ax, label=what, shrink=0.8)
    if n <= LABELLED_POSITIONS:
        labels = [wave.label(i, 8) for i in wave.ids]
        ax.set_xticks(range(n))
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(f"key position (attended to; the sample text's {wave.which}{n} tokens)")
    ax.set_ylabel("query position (attending)")
    mixer = mixer_entry(wave.cfg).short(wave.cfg)
    ax.set_title(f"Interference pattern: layer {layer + 1}/{wave.cfg.n_layers}, head 1/{wave.cfg.n_heads} "
                 f"({mixer}, causal; grey = future)", fontsize=11)
    fig.tight_layout()
    return fig


def wave_surface_3d(wave: WaveData) -> plt.Figure:
    tokens = wave.ids[:SURFACE_TOKENS]
    t = wave.t[::2]
    z = wave.signal(tokens, t)
    X, Y = np.meshgrid(t.numpy(), np.arange(len(tokens)))
    fig = plt.figure(figsize=(11, 7.5))
    ax = fig.add_subplot(projection="3d")
    peak = float(np.abs(z).max()) or 1.0
    if len(tokens) > 1:
        surf = ax.plot_surface(X, Y, z, cmap=DIVERGING, vmin=-peak, vmax=peak, linewidth=0, antialiased=True,
                               rcount=len(tokens), ccount=min(200, z.shape[1]))
    else:  # one token: a surface needs two rows, so draw it as a ribbon
        surf = ax.plot_surface(np.vstack([X, X]), np.vstack([Y - 0.4, Y + 0.4]), np.vstack([z, z]),
                               cmap=DIVERGING, vmin=-peak, vmax=peak, linewidth=0)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.1, label="s(t)")
    if len(tokens) <= 16:
        ax.set_yticks(range(len(tokens)))
        ax.set_yticklabels([wave.label(i, 8) for i in tokens], fontsize=7)
    ax.set_xlabel("t")
    ax.set_ylabel("token index in the sample text", labelpad=10)
    ax.set_zlabel("amplitude s(t)")
    ax.view_init(elev=35, azim=-60)
    ax.set_title(f"Wave surface: s(t) of the sample text's first {len(tokens)} tokens", fontsize=12)
    fig.tight_layout()
    return fig


# Every wave plot, drawn in this order by plot_wave_model (adding a plot: a function above and a line here).
PLOTS: dict[str, Callable[[WaveData], plt.Figure]] = {
    "frequency_heatmap": frequency_heatmap,
    "phase_distribution": phase_distribution,
    "harmonic_profiles": harmonic_profiles,
    "wave_packets": wave_packets,
    "polar_phases": polar_phases,
    "complex_plane": complex_plane,
    "spectrogram": spectrogram,
    "interference_pattern": interference_pattern,
    "wave_surface_3d": wave_surface_3d,
}
PLOT_NAMES = ("learning_curve", *PLOTS)
