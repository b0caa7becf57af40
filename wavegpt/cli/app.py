"""wavegpt-app: the Gradio app in the browser, serving the checkpoints of one folder.

    python app.py                               # the model shipped in checkpoints/
    python app.py --checkpoint-dir runs --port 7861

Every model folder in --checkpoint-dir can be chosen (the folder itself when it holds a
model, and each subfolder, training run folders included); nothing outside it can.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..extras import require
from ..generation import CHECKPOINT_ENV, shipped_folder
from . import run_command


def default_checkpoint_dir() -> Path:
    """$WAVEGPT_CHECKPOINT if set, else the folder the shipped model lives in."""

    if os.environ.get(CHECKPOINT_ENV):
        return Path(os.environ[CHECKPOINT_ENV])
    return shipped_folder()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wavegpt-app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-dir", metavar="FOLDER",
                   help="folder whose model folders the app offers (default: checkpoints/ at the repo root, "
                        "or $WAVEGPT_CHECKPOINT)")
    p.add_argument("--host", default=None,
                   help="address to listen on (default $GRADIO_SERVER_NAME, else 127.0.0.1: this machine only; "
                        "0.0.0.0 for everyone)")
    p.add_argument("--port", type=int, default=None,
                   help="port to listen on (default $GRADIO_SERVER_PORT, else 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    return p


def server_address(host: str | None, port: int | None) -> tuple[str, int]:
    """Flags first, then Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (containers, Spaces),
    then loopback:7860; a port that is not a number is a ValueError naming the variable."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port is None:
        raw = os.environ.get("GRADIO_SERVER_PORT") or "7860"
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"GRADIO_SERVER_PORT must be a port number, not {raw!r}.") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"The port must be between 0 and 65535, not {port}.")
    return host, port


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before gradio is imported
    args = build_parser().parse_args(argv)
    with run_command(interrupted=None):
        serve(args)


def serve(args: argparse.Namespace) -> None:
    """Check the address, the folder and the [app] extra, then serve until Ctrl-C; one-sentence ValueErrors."""

    host, port = server_address(args.host, args.port)
    folder = Path(args.checkpoint_dir) if args.checkpoint_dir else default_checkpoint_dir()
    if not args.checkpoint_dir and os.environ.get(CHECKPOINT_ENV) and not folder.is_dir():  # a typo, not a fallback
        raise ValueError(f"${CHECKPOINT_ENV} is set to {str(folder)!r}, which is not a folder; fix or unset it.")


    require("app", "wavegpt-app")
    from ..app import build_app

    demo = build_app(folder, device=args.device)
    try:
        demo.launch(server_name=host, server_port=port, share=args.share, show_error=True)
    except OSError:  # the port is taken, or the address is not this machine's; Gradio's own message names
        # its Python arguments (server_port=...), so say it in this command's flags instead
        raise ValueError(f"cannot listen on {host}:{port} (the port is in use or the address is not this "
                         f"machine's); choose another with --port or --host.") from None


if __name__ == "__main__":
    main()
