"""The Gradio app (sample, stream, look at the waves): `python app.py --help`."""

from wavegpt.cli.app import main

if __name__ == "__main__":
    main()
