"""Render an MP4 of the wave dynamics during generation: `python animate.py --help`."""

from wavegpt.cli.animate import main

if __name__ == "__main__":
    main()
