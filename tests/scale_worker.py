"""Several short trainings in one two-process launch (process start-up dominates on a small CPU).

tests/test_scale.py starts this with `accelerate launch --num_processes 2 --use_fsdp --fsdp_version 2
...`; each run is the real trainer (wavegpt.training.train). The first runs switch FSDP off to train
the same runs under plain data parallelism (DDP) as the reference; the rest run sharded (the switch
to FSDP is one way, so reference runs come first). Each process writes how many evaluation forward
passes it ran per run to ROOT/forwards_<rank>.json.

    accelerate launch ... tests/scale_worker.py ROOT CORPUS CACHE RUN...
    (RUN: name:preset[:ddp][:stop=N][:resume][:bf16][:steps=N])
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ARCH = dict(d_model=32, n_layers=2, n_heads=2, num_waves=8, num_harmonics=3, block_size=32, chunk_size=8)


def run_args(root: Path, corpus: str, cache: str, name: str, preset: str, **fields):
    from wavegpt.args import TrainArgs

    base = dict(preset=preset, model="tiny", dataset=None, data=corpus, out=str(root / name), max_steps=4,
                batch_size=4, vocab_size=300, overrides=dict(ARCH, rgd_warmup_steps=1), eval_interval=2,
                eval_batches=3, save_interval=2, log_interval=1, warmup_steps=2, progress=False, report_to="none",
                cache_dir=cache, cpu=True)
    return TrainArgs(**{**base, **fields})


def main() -> None:
    root, corpus, cache, *runs = sys.argv[1:]
    root = Path(root)
    from accelerate.state import AcceleratorState, GradientState

    from wavegpt import WaveGPT
    from wavegpt.training import train

    counts: dict[str, int] = {}
    current = {"run": ""}
    real = WaveGPT.forward

    def counting(self, idx, targets=None, *args, **kwargs):
        if not self.training:
            counts[current["run"]] = counts.get(current["run"], 0) + 1
        return real(self, idx, targets, *args, **kwargs)

    WaveGPT.forward = counting
    AcceleratorState.destroy_process_group = lambda self, group=None: None  # end_training() would close it
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false")
    for spec in runs:  # name:preset[:ddp][:stop=N][:resume][:bf16][:steps=N]
        name, preset, *flags = spec.split(":")
        current["run"] = name
        os.environ["ACCELERATE_USE_FSDP"] = "false" if "ddp" in flags else fsdp
        fields = {}
        for flag in flags:
            if flag.startswith("stop="):
                fields["stop_at"] = int(flag[5:])
            elif flag == "resume":
                fields["resume"] = True
            elif flag == "bf16":
                fields["mixed_precision"] = "bf16"
            elif flag.startswith("steps="):
                fields["max_steps"] = int(flag[6:])
        train(run_args(root, corpus, cache, name, preset, **fields))
        # The next run builds its Accelerator afresh, on the same process group (kept open below).
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    rank = int(os.environ.get("RANK", 0))
    (root / f"forwards_{rank}.json").write_text(json.dumps(counts))


if __name__ == "__main__":
    main()
