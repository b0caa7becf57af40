"""The animation renderer: decodable H.264 videos drawn from the model's own state, tokens
identical to generate.py's, and bad input refused before anything is written.

Tiny random checkpoints; small frames (320x180) wherever the size does not matter, and one
short render at the real 1280x720.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from tests.conftest import make_checkpoint, run_cli
from wavegpt.cli import animate as animate_cli
from wavegpt.cli import generate as generate_cli
from wavegpt.generation import encode_prompt, generate_texts, load_for_generation
from wavegpt.sampling import sample_tokens
from wavegpt.viz.animation.render import CLASSIC_NOTE, MAX_TOKENS, _Scene, render_animation

ROOT = Path(__file__).resolve().parent.parent
SMALL = (320, 180)
STATS = re.compile(r"^(\d+) frames in [\d.]+ s \([\d.]+ frames/s\)$", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models decode fastest on one thread (on a busy 2-core machine, 50x faster than two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("anim_ckpt")
    return {preset: make_checkpoint(root / preset, preset) for preset in ("full_physics", "pure_wave_linear",
                                                                          "classic")}


@pytest.fixture(scope="module")
def loaded(checkpoints):
    return {preset: load_for_generation(folder) for preset, folder in checkpoints.items()}


def read_video(path: Path) -> tuple[dict, list[np.ndarray]]:
    """ffmpeg's metadata for the file and its decoded RGB frames."""
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in frames]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part.mp4"))


def test_full_size_video_is_h264_yuv420p_with_one_frame_per_step(loaded, tmp_path):
    model, tok = loaded["full_physics"]
    result = render_animation(model, tok, "the king", tokens=3, frames_per_token=2, output=tmp_path / "wave.mp4",
                              seed=1)
    assert result.path == tmp_path / "wave.mp4" and result.frames == 6 and len(result.tokens) == 3
    meta, frames = read_video(result.path)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (1280, 720) and meta["fps"] == 8
    assert len(frames) == 6 and all(f.shape == (720, 1280, 3) for f in frames)
    assert all(np.abs(a.astype(int) - b).mean() > 0.01 for a, b in zip(frames, frames[1:]))  # every frame moves
    data = result.path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: browsers can play it while it loads
    assert leftovers(tmp_path) == []


def test_tokens_match_generate_across_a_window_slide(capsys, loaded, checkpoints, tmp_path):
    """40 tokens with block_size 32: the context slides, and the tokens are still generate.py's."""
    model, tok = loaded["full_physics"]
    prompt, seed = "the king and the queen", 3
    assert len(encode_prompt(tok, prompt)) + 40 > model.config.block_size + 1  # so the window does slide
    result = render_animation(model, tok, prompt, tokens=40, output=tmp_path / "slide.mp4", seed=seed,
                              temperature=0.9, top_k=50, size=SMALL)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.tensor([encode_prompt(tok, prompt)])
    expected = [int(t[0]) for t, _ in sample_tokens(model, idx, 40, temperature=0.9, top_k=50, generator=gen)]
    assert result.tokens == expected
    assert result.text == generate_texts(model, tok, prompt, 40, temperature=0.9, top_k=50, seed=seed)[0]
    code, out, _ = run_cli(capsys, generate_cli.main, "--checkpoint", str(checkpoints["full_physics"]),
                           "--prompt", prompt, "--max-new-tokens", "40", "--temperature", "0.9", "--top-k", "50",
                           "--seed", str(seed))
    assert code == 0 and out == prompt + result.text + "\n"
    assert len(read_video(result.path)[1]) == 40
    assert not any(isinstance(v, torch.Tensor) for v in vars(model.blocks[-1].attn).values())  # no per-call state


def test_cli_defaults_sample_like_generate(capsys, checkpoints, tmp_path):
    """Same flags, same tokens: the two commands share their sampling defaults (top-k 50, temperature 0.8)."""
    a, g = animate_cli.build_parser().parse_args([]), generate_cli.build_parser().parse_args([])
    assert (a.top_k, a.temperature, a.top_p) == (g.top_k, g.temperature, g.top_p)
    out_file = tmp_path / "cli.mp4"
    code, out, err = run_cli(capsys, animate_cli.main, "--checkpoint", str(checkpoints["full_physics"]),
                             "--prompt", "wave", "--tokens", "5", "--size", "320x180", "--output", str(out_file))
    assert code == 0, err
    assert out.splitlines()[0] == str(out_file)
    stats = STATS.search(out)
    assert stats and stats.group(1) == "5"
    assert len(read_video(out_file)[1]) == 5


def test_different_prompts_give_different_videos(loaded, tmp_path):
    model, tok = loaded["full_physics"]
    videos = [read_video(render_animation(model, tok, prompt, tokens=4, output=tmp_path / f"{i}.mp4", seed=0,
                                          size=SMALL).path)[1]
              for i, prompt in enumerate(["the king", "good sir"])]
    assert len(videos[0]) == len(videos[1]) == 4
    assert any(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(*videos))


def test_linear_mode_renders_its_weights(loaded, tmp_path):
    model, tok = loaded["pure_wave_linear"]
    result = render_animation(model, tok, "the sea", tokens=6, output=tmp_path / "linear.mp4", size=SMALL,
                              layer=0, head=1)
    meta, frames = read_video(result.path)
    assert len(frames) == 6 and meta["size"] == SMALL
    scene = _Scene(model, tok, SMALL, 0, 1)
    assert "linear attention" in scene.mixer.ax.get_title(loc="left")
    assert "Σ" in scene.mixer.ax.get_ylabel()  # the weights linear attention mixes with: phi(q).phi(k) / row sum
    scene.close()


def test_classic_model_renders_with_the_note(loaded, tmp_path):
    model, tok = loaded["classic"]
    result = render_animation(model, tok, "my lord", tokens=5, output=tmp_path / "classic.mp4", size=SMALL)
    assert len(read_video(result.path)[1]) == 5
    scene = _Scene(model, tok, SMALL, 1, 0)
    assert scene.wave.signal_line is None and [t.get_text() for t in scene.wave.ax.texts] == [CLASSIC_NOTE]
    scene.close()


def test_failed_render_leaves_the_old_file_and_no_temp(loaded, tmp_path):
    model, tok = loaded["full_physics"]
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old video")

    def fail(done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        render_animation(model, tok, "the", tokens=5, output=target, size=SMALL, progress=fail)
    assert target.read_bytes() == b"old video" and leftovers(tmp_path) == []
    assert not model.training  # sample_steps put the model back as it was


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer=2), "layer must be between -2 and 1"),
    (dict(head=-3), "head must be between -2 and 1"),
    (dict(tokens=MAX_TOKENS + 1), "tokens must be between"),
    (dict(fps=61), "fps must be"),
    (dict(size=(321, 180)), "even"),
    (dict(temperature=-1.0), "temperature"),
    (dict(output="wave.gif"), ".mp4"),
])
def test_bad_arguments_raise_one_sentence(loaded, tmp_path, kwargs, message):
    model, tok = loaded["full_physics"]
    kwargs.setdefault("output", tmp_path / "x.mp4")
    with pytest.raises(ValueError, match=re.escape(message)):
        render_animation(model, tok, "the", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [
    ["--tokens", "0"], ["--tokens", str(MAX_TOKENS + 1)], ["--fps", "0"], ["--fps", "61"],
    ["--frames-per-token", "0"], ["--layer", "5"], ["--head", "9"], ["--temperature", "-1"], ["--top-p", "1.5"],
    ["--size", "321x180"], ["--size", "100x100"], ["--size", "big"], ["--output", "OUT/wave.avi"],
    ["--output", "OUT/missing/wave.mp4"], ["--output", "OUT/a_file/wave.mp4"], ["--output", "OUT"],
])
def test_cli_bad_input_exits_2_and_writes_nothing(capsys, checkpoints, tmp_path, flags):
    (tmp_path / "a_file").write_text("not a folder")
    flags = [f.replace("OUT", str(tmp_path)) for f in flags]
    if "--output" not in flags:
        flags += ["--output", str(tmp_path / "wave.mp4")]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, animate_cli.main, "--checkpoint", str(checkpoints["full_physics"]), *flags)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no video, no temp file


def test_cli_without_a_checkpoint_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("wavegpt.generation.default_checkpoint", lambda: None)
    code, _, err = run_cli(capsys, animate_cli.main, "--output", str(tmp_path / "w.mp4"))
    assert code == 2 and err.startswith("error: ") and "--checkpoint" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [["--layer", "7"], ["--output", "missing_folder/wave.mp4"]])
def test_animate_script_bad_input_has_no_traceback(checkpoints, tmp_path, flags):
    """The real entry script, in a subprocess: one error line, exit 2, nothing written."""
    output = ["--output", str(tmp_path / "wave.mp4")] if "--output" not in flags else []
    flags = [str(tmp_path / f) if f.startswith("missing_folder") else f for f in flags]
    result = subprocess.run(
        [sys.executable, "animate.py", "--checkpoint", str(checkpoints["full_physics"]), "--tokens", "3",
         *flags, *output], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []
