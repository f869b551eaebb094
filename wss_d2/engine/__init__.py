from .trainer import CheckpointOnInterrupt, Trainer
