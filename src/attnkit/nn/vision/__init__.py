"""Attention over the channels and positions of convolutional feature maps
``(B, C, H, W)``: Squeeze-and-Excitation and CBAM."""

from attnkit.nn.vision.cbam import CBAM, ChannelAttention, SpatialAttention
from attnkit.nn.vision.squeeze_excitation import SqueezeExcitation

__all__ = ["SqueezeExcitation", "ChannelAttention", "SpatialAttention", "CBAM"]
