"""wss_d2: weakly supervised semantic segmentation methods as a detectron2 extension.

Importing the package registers its datasets, backbones, heads and mappers.
"""
from . import data  # noqa: F401
from . import modeling  # noqa: F401
from . import methods  # noqa: F401
from .config import add_wss_config, get_wss_cfg

__version__ = "0.1.0"
