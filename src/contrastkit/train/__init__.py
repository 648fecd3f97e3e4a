"""The engine: configs, optimizers, checkpoints, the training loop (on Lightning Fabric)."""

from contrastkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from contrastkit.train.config import ConfigError, RunConfig, config_from_dict, load_config
from contrastkit.train.engine import Engine, Task
from contrastkit.train.optim import LARS, build_optimizer, warmup_cosine

__all__ = [
    "LARS",
    "ConfigError",
    "Engine",
    "RunConfig",
    "Task",
    "build_optimizer",
    "config_from_dict",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "warmup_cosine",
]
