"""ssl-modal: self-supervised representation learning across domains.

One contract (Encoder, Objective, SSLModel), one Trainer, one embedding export.
"""

__version__ = "0.1.0"

from .core.checkpoint import CheckpointError
from .core.config import ConfigError, load_config
from .core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel
from .core.export import encode, export, load_model
from .core.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Encoder",
    "EncoderOutput",
    "ModelSpec",
    "Objective",
    "SSLModel",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "encode",
    "export",
    "load_config",
    "load_model",
    "__version__",
]
