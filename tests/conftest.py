import random
from pathlib import Path

import pytest
import torch

from wavegpt.config import WaveGPTConfig

torch.set_num_threads(1)  # tiny test models are overhead-bound; one thread is as fast and deterministic

WORDS = ["the", "king", "queen", "wave", "light", "sea", "night", "day", "love", "war", "speak", "thou", "art",
         "my", "lord", "good", "sir"]


def tiny_config(preset: str = "full_physics", **overrides) -> WaveGPTConfig:
    """A model small enough for unit tests, with the preset's architecture."""
    fields = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=2, num_waves=8, num_harmonics=3,
                  block_size=32, chunk_size=8)
    fields.update(overrides)
    return WaveGPTConfig.from_preset("tiny", preset, **fields)


def make_checkpoint(folder: Path, preset: str = "full_physics", seed: int = 0, **overrides) -> Path:
    """A tiny random-weight checkpoint folder (config, weights, tokenizer), as wavegpt-train writes."""
    from wavegpt import WaveGPT
    from wavegpt.tokenizer import WaveTokenizer

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) + ".\n" for _ in range(60)]
    tokenizer = WaveTokenizer.train(texts, vocab_size=300)
    torch.manual_seed(seed)
    model = WaveGPT(tiny_config(preset, vocab_size=tokenizer.vocab_size, **overrides))
    model.save_pretrained(folder, tokenizer=tokenizer)
    return Path(folder)


@pytest.fixture
def make_config():
    return tiny_config
