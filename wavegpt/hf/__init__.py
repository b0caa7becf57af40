"""wavegpt models as transformers models (needs the [hf] extra): importing this package registers wavegpt's
configs and models with AutoConfig, AutoModel and AutoModelForCausalLM, so

    import wavegpt.hf
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    model = AutoModelForCausalLM.from_pretrained("checkpoints")
    pipeline("text-generation", model="checkpoints")("ROMEO:", max_new_tokens=30, do_sample=False)

work on every wavegpt model folder, without trust_remote_code. See wavegpt/hf/modeling.py for how positions,
padding and the context window behave, and wavegpt/hf/lm_eval.py for lm-evaluation-harness.
"""

from ..extras import require

require("hf", "wavegpt.hf", ("transformers",))

from .modeling import (  # noqa: E402
    WaveGPTCache,
    WaveGPTClassicForCausalLM,
    WaveGPTClassicHFConfig,
    WaveGPTForCausalLM,
    WaveGPTHFConfig,
    register,
)

register()

__all__ = ["WaveGPTHFConfig", "WaveGPTClassicHFConfig", "WaveGPTForCausalLM", "WaveGPTClassicForCausalLM",
           "WaveGPTCache", "register"]
