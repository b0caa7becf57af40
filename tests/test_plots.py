"""The wave plots: all ten from a tiny trained run, valid non-blank PNGs; the classic refusal; the
interference pattern agrees with the attention weights the model itself records while decoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, TINY_VOCAB, prose, tiny_args, tiny_config
from wavegpt import WaveGPT
from wavegpt.model.cache import DecodeCache
from wavegpt.training import train
from wavegpt.viz.wave_plots import PLOT_NAMES, interference_matrix, plot_wave_model


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two tiny runs trained for a few steps with the real loop: a wave model and a classic one."""
    root = tmp_path_factory.mktemp("plots")
    corpus = root / "corpus.txt"
    corpus.write_text(prose(20_000, seed=0))
    runs = {}
    for preset in ("full_physics", "classic"):
        out = root / preset
        train(tiny_args(root, corpus, root / "cache", preset=preset, out=str(out), max_steps=12, eval_interval=6,
                        save_interval=12, log_interval=2))
        runs[preset] = out
    return runs


def assert_valid_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000, path
    with Image.open(path) as img:
        img.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600, (path, pixels.shape)
    # Not blank: plenty of non-background pixels and real contrast.
    assert (pixels < 200).mean() > 0.01 and pixels.std() > 10, path


def test_every_wave_plot_is_written_from_a_trained_run(trained_runs, tmp_path):
    out = tmp_path / "plots"
    written = plot_wave_model(trained_runs["full_physics"] / "best", out)  # metrics found one level up
    assert sorted(written) == sorted(PLOT_NAMES)
    for name in PLOT_NAMES:
        assert written[name] == out / f"{name}.png"
        assert_valid_png(written[name])
    # Different models give different pictures (the plots show the weights, not a template).
    other = plot_wave_model(trained_runs["full_physics"] / "best", tmp_path / "text2", sample_text="Good night, sir.")
    assert other["wave_packets"].read_bytes() != written["wave_packets"].read_bytes()


def test_plots_command(trained_runs, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "wavegpt.cli.plots", "--checkpoint", str(trained_runs["full_physics"]),
                           "--out", str(out), "--text", "The king speaks."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(Path(p).name for p in proc.stdout.split()) == sorted(f"{n}.png" for n in PLOT_NAMES)

    bad = subprocess.run([sys.executable, "-m", "wavegpt.cli.plots", "--checkpoint", str(tmp_path / "nothing"),
                          "--out", str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_classic_model_gets_its_learning_curve_and_a_clear_refusal(trained_runs, tmp_path):
    with pytest.raises(ValueError, match="classic model: it has no wave packets"):
        plot_wave_model(trained_runs["classic"], tmp_path / "classic")
    assert_valid_png(tmp_path / "classic" / "learning_curve.png")
    assert not (tmp_path / "classic" / "wave_packets.png").exists()


@pytest.mark.parametrize("preset", ["full_physics", "pure_wave", "pure_wave_linear", "classic", "wave_network"])
def test_interference_pattern_matches_the_weights_of_cached_decoding(preset):
    """The plotted matrix's last row is what the mixer returns when the newest token is decoded on its own."""
    torch.manual_seed(0)
    model = WaveGPT(tiny_config(preset)).eval()
    ids = torch.randint(0, TINY_VOCAB, (1, 20)).tolist()[0]
    matrix, _ = interference_matrix(model, ids, layer=-1, head=1)
    cache = DecodeCache(model.config.n_layers)
    with torch.no_grad():
        model(torch.tensor([ids[:-1]]), cache=cache, weights_of=-1)
        *_, mixed = model(torch.tensor([ids[-1:]]), cache=cache, weights_of=-1)
    row = matrix[-1]
    assert np.isnan(matrix[0, 1:]).all() and not np.isnan(row).any()
    np.testing.assert_allclose(row, mixed.row()[1].float().numpy(), rtol=1e-4, atol=1e-6)
