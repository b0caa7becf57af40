"""Sample text from a trained Wave-Native GPT: `python generate.py --help`."""

from wavegpt.cli.generate import main

if __name__ == "__main__":
    main()
