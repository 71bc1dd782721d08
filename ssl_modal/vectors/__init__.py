"""Dense vectors (tabular rows, precomputed features): the smallest complete domain.

It is the worked example of docs/adding_a_domain.md and the model the core tests train.
"""

from .model import (
    MaskedFeatureObjective,
    MLPEncoder,
    ReconstructionObjective,
    VectorConfig,
    build_vector_model,
    collate_vectors,
)

__all__ = [
    "MLPEncoder",
    "MaskedFeatureObjective",
    "ReconstructionObjective",
    "VectorConfig",
    "build_vector_model",
    "collate_vectors",
]
