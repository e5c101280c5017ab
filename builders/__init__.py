"""How models are made: pure builders (mlp, dtr, slr, linear) behind one interface, with no I/O."""
from modelbus.builders.base import (
    KINDS,
    Builder,
    BuildError,
    BuildResult,
    Cancelled,
    InputError,
    Model,
    TrainingData,
    get_builder,
    library_versions,
)
from modelbus.builders.split import train_test_indices

__all__ = [
    "KINDS",
    "Builder",
    "BuildError",
    "BuildResult",
    "Cancelled",
    "InputError",
    "Model",
    "TrainingData",
    "get_builder",
    "library_versions",
    "train_test_indices",
]
