"""benchmarks/gpu_check.py runs end to end (--smoke: every section shrunk to seconds) and its report keeps its
shape, so the script that a short GPU window depends on cannot rot between windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def run_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WAVEGPT_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "check.json"
    done = run_check("--smoke", "--device", "cpu", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for word in ("bf16", "fp16", "compile", "classic_rope", "tokens_per_s", "decode", "memory"):
        assert word in text, word
    report = json.loads(text)
    for key in ("machine", "training", "mixers", "decode", "convergence", "skipped", "wall_s"):
        assert key in report, key
    assert report["machine"]["torch"] == torch.__version__ and "cuda" in report["machine"]
    measured = [e for e in report["training"] if "tokens_per_s" in e]
    for mode in ("fp32", "bf16", "fp16"):  # torch runs all three on the CPU (fp16 through its CPU autocast)
        presets = {e["preset"] for e in measured if e["mode"] == mode}
        assert presets == {"classic_rope", "baseline", "full_physics", "pure_wave_linear", "wave_network"}, mode
    for e in measured:
        assert e["tokens_per_s"] > 0 and e["loss_finite"] and "peak_memory_mb" in e and e["mfu"] is None
        assert e["vs_classic_rope"] is not None
    assert any(e["mode"] == "compile" and "skipped" in e for e in report["training"])  # --smoke skips compile
    assert any(s["section"] == "compile" for s in report["skipped"])
    mixers = report["mixers"]
    assert set(mixers["fwd_bwd_ms"]) == {"interference", "softmax", "pure_wave_quadratic", "pure_wave_linear",
                                         "wave_network"}
    assert all(isinstance(v, float) for row in mixers["fwd_bwd_ms"].values() for v in row.values())
    assert set(mixers["crossover"]) == {"pure_wave_linear", "wave_network"}
    assert report["decode"] and all(r["decode_ms_per_token"] > 0 and r["weight_read_ms"] > 0
                                    and r["decode_over_weight_read"] > 0 for r in report["decode"])
    runs = report["convergence"]["runs"]
    assert {(r["preset"], r["precision"]) for r in runs} == {(p, d) for p in ("baseline", "classic_rope")
                                                            for d in ("fp32", "bf16")}
    assert all(r["complete"] and r["val_nats_per_char"] > 0 for r in runs)
    table = out.with_suffix(".md").read_text()
    assert "| size | mode | preset | tokens/s |" in table and "decode" in table and table in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_cuda_without_a_gpu_is_one_sentence(tmp_path):
    done = run_check("--device", "cuda", "--out", str(tmp_path / "x.json"), tmp_path=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "no CUDA GPU" in lines[0], done.stderr
    assert not (tmp_path / "x.json").exists()


def test_bad_flags_are_one_sentence(tmp_path):
    done = run_check("--smoke", "--device", "cpu", "--time-limit", "5", "--out", str(tmp_path / "x.json"),
                     tmp_path=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--time-limit" in done.stderr
