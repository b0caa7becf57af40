"""Physics-inspired training: the RGD optimizer and the QFE loss, usable in any torch loop."""

from .qfe import QFELoss
from .rgd import RGD

__all__ = ["RGD", "QFELoss"]
