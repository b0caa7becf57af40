"""The checkpoint shipped in checkpoints/: complete, small, loadable, and the default of the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from wavegpt import WaveGPT

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"


def test_shipped_checkpoint_is_complete_and_small():
    names = {p.name for p in SHIPPED.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= names
    assert sum(p.stat().st_size for p in SHIPPED.iterdir() if p.is_file()) < 25 * 2**20
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["model_type"] == "wavegpt.wave"  # namespaced (older folders say "wave" and still load)
    model = WaveGPT.from_pretrained(SHIPPED)
    assert model.config.vocab_size == config["vocab_size"]


def test_generate_defaults_to_the_shipped_checkpoint():
    env = {k: v for k, v in os.environ.items() if k != "WAVEGPT_CHECKPOINT"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "generate.py", "--prompt", "ROMEO:", "--max-new-tokens", "30", "--seed", "1"]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) > len("ROMEO:") + 20
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.stdout == first.stdout  # same seed, same text
