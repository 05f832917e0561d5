"""``attnkit vision``: attention in vision models on real Fashion-MNIST images.

Parts (one module each, see :mod:`attnkit.experiments.vision.cli`): ``channel`` (SE and
CBAM in a CNN), ``glimpse`` (RAM and soft spatial attention on cluttered 60x60 images),
``caption`` and ``vit``.
"""
