"""The Gradio app against a real server on a free port: through gradio_client and a real browser.

One server serves a folder of tiny checkpoints for the whole module (starting Gradio is the
slow part). The server's torch runs on one thread: the machine is shared, and 20
concurrent requests on two threads each would only fight over the cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client

from tests.conftest import free_port, make_checkpoint
from wavegpt.app import CLASSIC_NOTE, WaveApp, animation_available, build_app, list_checkpoints
from wavegpt.cli.app import main as app_main

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when a server or client starts: no calls home

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "test-artifacts" / "app_screenshot.png"
PROMPT = "the king"
# checkpoint, prompt, max new tokens, temperature, top-k, top-p, seed: the /generate API's order
VALID = ("tiny", PROMPT, 16, 0.8, 0, 1.0, 1)

pytestmark = [  # pandas 3 deprecations inside gradio's queue, not ours
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    """tiny (wave), classic, a training run folder (model in best/), a broken one, a non-model folder and
    a copy of the shipped checkpoint (the page's default, so that the screenshot shows real text)."""
    root = tmp_path_factory.mktemp("app-checkpoints")
    tiny = make_checkpoint(root / "tiny")
    shutil.copytree(ROOT / "checkpoints", root / "shakespeare")
    make_checkpoint(root / "classic", preset="classic")
    shutil.copytree(tiny, root / "run" / "best")
    shutil.copy(tiny / "tokenizer.json", root / "run" / "tokenizer.json")
    shutil.copytree(tiny, root / "broken")
    (root / "broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a model\n")
    return root


@pytest.fixture(scope="module")
def server(checkpoint_dir) -> Iterator[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = build_app(checkpoint_dir, default="shakespeare").queue(default_concurrency_limit=2, max_size=64)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            show_error=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(server) -> Iterator[Client]:
    c = Client(server, verbose=False)
    yield c
    c.close()


def test_lists_model_folders_only(checkpoint_dir):
    assert list(list_checkpoints(checkpoint_dir)) == ["broken", "classic", "run", "shakespeare", "tiny"]
    assert list(list_checkpoints(checkpoint_dir / "tiny")) == ["."]  # the folder itself holds a model
    assert list(list_checkpoints(checkpoint_dir / "notes")) == []


def test_generation_streams_and_equals_generate_script(client, checkpoint_dir):
    job = client.submit("tiny", PROMPT, 24, 0.9, 20, 1.0, 7, api_name="/generate")
    text = job.result(timeout=60)
    updates = job.outputs()
    assert text and updates[-1] == text
    assert len(set(updates)) > 2, updates  # streamed piece by piece, not sent once at the end
    assert all(b.startswith(a) for a, b in zip(updates, updates[1:]))
    script = subprocess.run(
        [sys.executable, "generate.py", "--checkpoint", str(checkpoint_dir / "tiny"), "--prompt", PROMPT,
         "--seed", "7", "--temperature", "0.9", "--top-k", "20", "--max-new-tokens", "24"],
        check=True, cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUTF8": "1"},
    )
    assert script.stdout == PROMPT + text + "\n"  # generate.py prints the prompt, the text, a newline


def test_twenty_concurrent_requests_all_complete(client):
    jobs = [client.submit("tiny", PROMPT, 12, 1.0, 0, 0.9, i % 10, api_name="/generate") for i in range(20)]
    texts = [job.result(timeout=60) for job in jobs]
    assert all(isinstance(t, str) and t for t in texts)
    assert texts[:10] == texts[10:]  # same seed, same text, however the requests interleave


def test_bad_requests_answer_with_a_sentence_and_the_server_lives_on(client):
    bad = [  # Gradio checks the picker and the sliders itself; either way the message names the value
        (("../../etc", *VALID[1:]), r"\.\./\.\./etc"),
        (("tiny", PROMPT, 16, -1, 0, 1.0, 1), "-1"),
        (("tiny", PROMPT, 5000, 0.8, 0, 1.0, 1), "5000"),
        (("broken", *VALID[1:]), "Checkpoint 'broken' could not be loaded"),  # listed, but its weights are junk
    ]
    for args, message in bad:
        with pytest.raises(Exception, match=message) as err:
            client.predict(*args, api_name="/generate")
        assert "Traceback" not in str(err.value)
    assert client.predict(*VALID, api_name="/generate")


def test_server_side_checks_refuse_what_the_page_cannot_send(checkpoint_dir):
    """Gradio's own checks come first; these hold even if they change or are bypassed."""
    app = WaveApp(checkpoint_dir)
    for name in ("../../etc", "/etc", "notes", "run/best", None, 3):
        with pytest.raises(gr.Error, match="not one of the listed checkpoints"):
            next(app.generate(name, PROMPT, 8, 0.8, 0, 1.0, 1))
    for args, message in [((0, 0.8, 0, 1.0, 1), "between 1 and 1000"), ((1001, 0.8, 0, 1.0, 1), "between 1 and"),
                          ((8.5, 0.8, 0, 1.0, 1), "whole number"), ((8, -1, 0, 1.0, 1), "Temperature"),
                          ((8, float("nan"), 0, 1.0, 1), "Temperature"), ((8, 0.8, -2, 1.0, 1), "Top-k"),
                          ((8, 0.8, 0, 0.0, 1), "Top-p"), ((8, 0.8, 0, 1.0, -1), "Seed"),
                          ((8, 0.8, 0, 1.0, None), "Seed")]:
        with pytest.raises(gr.Error, match=message):
            next(app.generate("tiny", PROMPT, *args))
    with pytest.raises(gr.Error, match="No checkpoints are available"):
        next(WaveApp(checkpoint_dir / "notes").generate(".", PROMPT, 8, 0.8, 0, 1.0, 1))


def test_empty_folder_shows_a_message_and_missing_folder_exits_2(checkpoint_dir, tmp_path, capsys):
    demo = build_app(checkpoint_dir / "notes")
    shown = [c.get("props", {}).get("value") for c in demo.config["components"]]
    assert any(isinstance(v, str) and "No checkpoints found" in v for v in shown)
    with pytest.raises(SystemExit) as exit_info:
        app_main(["--checkpoint-dir", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and "does not exist" in err


def test_waves_panel(client):
    plot, note = client.predict("tiny", PROMPT, api_name="/waves")
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")
    assert "prompt tokens" in note
    assert client.predict("classic", PROMPT, api_name="/waves") == (None, CLASSIC_NOTE)


@pytest.mark.skipif(not animation_available(), reason="wavegpt.viz.animation is not there yet")
def test_animation_replays_the_last_generation(server):
    c = Client(server, verbose=False)  # a session of its own: the last generation is per session
    try:
        with pytest.raises(Exception, match="Generate some text first"):
            c.predict(api_name="/animate")
        text = c.predict("tiny", PROMPT, 4, 0.8, 0, 1.0, 3, api_name="/generate")
        video, summary = c.predict(api_name="/animate")
    finally:
        c.close()
    path = Path(video["video"] if isinstance(video, dict) else video)
    assert path.suffix == ".mp4" and path.stat().st_size > 1000
    assert summary.startswith("4 tokens") and text


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (CI installs Debian's chromium)")
def test_browser_generates_text_and_screenshot(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOT.parent.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Only the app itself: no web fonts or anything else from outside (there is no network in CI).
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else route.abort())
            page.goto(server, wait_until="domcontentloaded", timeout=30_000)
            page.locator("#prompt textarea").fill("ROMEO:")
            page.locator("#generate").click()
            page.wait_for_function("() => document.querySelector('#output textarea')?.value.length > 0",
                                   timeout=30_000)
            page.locator("#waves-plot img").wait_for(timeout=30_000)
            page.wait_for_timeout(500)  # let the last streamed pieces land
            text = page.locator("#output textarea").input_value()
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert text.strip()
    assert SCREENSHOT.stat().st_size > 10_000
