"""wavegpt: train, sample, visualise and serve the Wave-Native GPT."""

from .config import PRESETS, SIZES, WaveGPTConfig
from .model.gpt import WaveGPT
from .physics import RGD, QFELoss

__all__ = ["WaveGPTConfig", "WaveGPT", "RGD", "QFELoss", "PRESETS", "SIZES"]
__version__ = "0.1.0"
