from .hooks import BestValCheckpointer, CheckpointOnInterrupt
from .train_loop import LossDivergedError
from .trainer import Trainer
