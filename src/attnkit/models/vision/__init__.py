"""Vision models: a CNN with SE/CBAM gates, RAM (hard glimpses), a soft spatial-attention
classifier, the Show-Attend-Tell captioner (soft and hard attention) and a small ViT."""

from attnkit.models.vision.cnn import CNN, ConvTrunk, cbam_gate, se_gate
from attnkit.models.vision.ram import RAM, RAMConfig, RAMOutput, glimpse_patches, ram_loss
from attnkit.models.vision.show_attend_tell import (
    CanvasEncoder,
    ShowAttendTell,
    ShowAttendTellConfig,
    caption_loss,
)
from attnkit.models.vision.soft_spatial import SoftSpatialClassifier
from attnkit.models.vision.vit import VisionTransformer, ViTConfig

__all__ = ["CNN", "ConvTrunk", "cbam_gate", "se_gate", "RAM", "RAMConfig", "RAMOutput",
           "glimpse_patches", "ram_loss", "CanvasEncoder", "ShowAttendTell",
           "ShowAttendTellConfig", "caption_loss", "SoftSpatialClassifier",
           "VisionTransformer", "ViTConfig"]
