"""Training: the Accelerate loop (trainer.py) around train_step, the counters it resumes from (state.py),
the run folder (run_folder.py), the optimizer, loss and schedule (optim.py), the launcher's settings
(scaling.py)."""

from .optim import build_optimizer, lr_at
from .run_folder import TrainError
from .state import TrainState
from .trainer import train, train_step

__all__ = ["train", "train_step", "TrainError", "TrainState", "build_optimizer", "lr_at"]
