"""Train a Wave-Native GPT: `python train.py --help` (also `accelerate launch train.py ...`)."""

from wavegpt.cli.train import main

if __name__ == "__main__":
    main()
