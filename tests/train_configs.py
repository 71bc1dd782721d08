"""One quiet TrainConfig for tests that train a model: no progress bar, no TensorBoard, no collapse monitor,
no periodic checkpoint unless the test asks for one."""

from ssl_modal import TrainConfig


def quiet_config(output_dir, **settings) -> TrainConfig:
    """TrainConfig(output_dir, **settings) with the test defaults above; any of them can be overridden."""
    defaults = {"progress": False, "tensorboard": False, "monitor_every": 0, "checkpoint_every": 1000}
    return TrainConfig(output_dir=str(output_dir), **{**defaults, **settings})
