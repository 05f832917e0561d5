"""Vision models: a CNN with SE/CBAM variants, RAM (hard glimpses) and a soft spatial-
attention classifier. One import line per model file (re-exports), so others can append
theirs."""

from attnkit.models.vision.cnn import CNN, ConvTrunk, cbam_gate, se_gate  # noqa: F401
from attnkit.models.vision.ram import RAM, RAMConfig, RAMOutput, glimpse_patches, ram_loss  # noqa: F401
from attnkit.models.vision.soft_spatial import SoftSpatialClassifier  # noqa: F401
