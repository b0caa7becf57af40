"""wavegpt: train, sample, visualise and serve the Wave-Native GPT."""

from .config import PRESETS, SIZES, WaveGPTConfig
from .model.gpt import WaveGPT
from .physics import RGD, QFELoss

__all__ = ["WaveGPTConfig", "WaveGPT", "RGD", "QFELoss", "PRESETS", "SIZES"]
__version__ = "0.1.0"

import sys as _sys

if "transformers.modeling_utils" in _sys.modules:  # transformers is loaded already: registering costs nothing
    from . import hf as _hf  # noqa: E402,F401  (AutoModelForCausalLM.from_pretrained reads wavegpt folders)
