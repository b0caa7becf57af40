import pytest
import torch

from wavegpt.config import WaveGPTConfig

torch.set_num_threads(2)


def tiny_config(preset: str = "full_physics", **overrides) -> WaveGPTConfig:
    """A model small enough for unit tests, with the preset's architecture."""
    fields = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=2, num_waves=8, num_harmonics=3,
                  block_size=32, chunk_size=8)
    fields.update(overrides)
    return WaveGPTConfig.from_preset("tiny", preset, **fields)


@pytest.fixture
def make_config():
    return tiny_config
