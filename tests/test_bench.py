"""wavegpt-bench: rows that set config fields, and a benchmark started again continues where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env, prose
from wavegpt.bench import parse_spec
from wavegpt.config import ConfigError


def test_row_specs_name_a_preset_and_config_fields():
    assert parse_spec("baseline+tie_head=true+wave_lr_scale=0.5") == ("baseline", {"tie_head": True,
                                                                                  "wave_lr_scale": 0.5})
    preset, fields = parse_spec("seed_faithful")
    assert preset == "full_physics" and fields["position"] == "embedding"
    for bad in ("quantum", "baseline+tie_head", "baseline+position=sideways", "baseline+no_such_field=1"):
        with pytest.raises(ConfigError):
            parse_spec(bad)


def test_bench_trains_each_row_once_and_reuses_finished_runs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(prose(30_000, seed=3), encoding="utf-8")
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "wavegpt.cli.bench", "--model", "tiny", "--block-size", "32", "--batch-size", "4",
           "--max-tokens", "256", "--eval-batches", "1", "--seeds", "0", "--no-controls", "--data", str(corpus),
           "--presets", "seed_faithful", "baseline+tie_head=true", "--out", str(out)]
    env = cli_env(tmp_path / "cache")
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "results.json").read_text())["summary"]
    rows = {r["preset"]: r for r in summary}
    assert set(rows) == {"seed_faithful", "baseline+tie_head=true"}
    run = out / "runs" / "seed_faithful-seed0"
    config = json.loads((run / "best" / "config.json").read_text())
    assert (config["position"], config["temperature_init"], config["amplitude_init"]) == ("embedding", "sqrt_waves",
                                                                                          "unit")
    tied = json.loads((out / "runs" / "baseline__tie_head-true-seed0" / "best" / "config.json").read_text())
    assert tied["tie_head"] is True and tied["position"] == "rotary"
    stamp = (run / "metrics.jsonl").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run / "metrics.jsonl").stat().st_mtime_ns == stamp  # finished runs are not trained again
    again_rows = json.loads((out / "results.json").read_text())["summary"]
    assert [r["val_nats_per_char"] for r in again_rows] == [r["val_nats_per_char"] for r in summary]
