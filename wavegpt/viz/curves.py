"""A training run's curves: metrics.jsonl read back, and learning_curve.png (matplotlib Agg).

matplotlib (the [viz] extra) is imported inside the function that draws: the trainer imports this
module, and a core install trains without matplotlib (the trainer then says what is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data import DataError

PNG_METADATA = {"Software": "wavegpt"}  # how wavegpt recognises its own plots (see wavegpt/ownership.py)


NUMBERS = ("step", "tokens", "loss", "ce", "coherence", "lr", "tokens_per_s", "val", "val_nats_per_token",
           "val_nats_per_char")  # what the plots read from a metrics line, when it is there


def read_metrics(path: str | Path) -> list[dict]:
    """metrics.jsonl's lines (one JSON object each, as training writes them). A last line a crash tore
    mid-write is skipped; any other line that is not a metrics object is a DataError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}).") from None
    lines = text.splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) and not text.endswith("\n"):
                break  # torn by a crash mid-write: the lines before it are whole
            raise DataError(f"{path} line {n} is not valid JSON; it is not a metrics.jsonl training wrote.") from None
        bad = not isinstance(row, dict) or any(
            k in row and row[k] is not None and (isinstance(row[k], bool) or not isinstance(row[k], int | float))
            for k in NUMBERS)
        if bad:
            raise DataError(f"{path} line {n} is not a metrics line (an object of numbers such as step, tokens, "
                            f"ce); it is not a metrics.jsonl training wrote.")
        rows.append(row)
    return rows


def plot_learning_curve(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Training loss (cross-entropy) and held-out validation loss against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    train = [r for r in rows if "ce" in r]
    val = [r for r in rows if "val_nats_per_token" in r]
    if train:
        ax.plot([r["tokens"] for r in train], [r["ce"] for r in train], color="#1f77b4", alpha=0.6,
                label="train cross-entropy")
    if val:
        ax.plot([r["tokens"] for r in val], [r["val_nats_per_token"] for r in val], "o-", color="#d62728",
                label="held-out validation")
        best = min(val, key=lambda r: r["val_nats_per_token"])
        ax.set_title(f"Learning curve (best val {best['val_nats_per_token']:.3f} nats/token, "
                     f"{best.get('val_nats_per_char', float('nan')):.3f} nats/char)")
    else:
        ax.set_title("Learning curve")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, metadata=PNG_METADATA)
    plt.close(fig)
    return out_png
