"""Quantize a float image classifier with onnxruntime's static quantizer, the way deployments do it and
the way ``rewrite`` then finds its Convs: QDQ format, int8 weights quantized symmetrically per output
channel, uint8 activations calibrated (MinMax) on images read with the model's own preprocessing.

onnxruntime's pre-processing (symbolic shape inference and its basic graph optimisations, which fold
BatchNormalization into the Convs) runs first, as its quantizer asks. The calibration images are an
evenly spaced, deterministic subset of the data set; their file names are recorded in the model's
metadata (``onnxpred.calibration_images``) so that accuracy can be measured on the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import onnx

from .datasets import LabelledImage, PreprocessingSpec, batches, load_dataset
from .errors import UnsupportedModelError, UserError
from .model_io import load_model, needs_external_data, write_model
from .runtime import ModelLike
from .validation import first_line, onnxruntime_errors

DEFAULT_CALIBRATION_IMAGES = 32
CALIBRATION_BATCH = 8
CALIBRATION_KEY = "onnxpred.calibration_images"
# Ops of a model quantized already, which the quantizer would quantize again around them.
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


def calibration_subset(images: Sequence[LabelledImage], count: int) -> list[LabelledImage]:
    """``count`` images spread evenly over ``images`` (all of them when there are fewer): classes sorted
    together in a data set are all represented."""
    if count < 1:
        raise UserError(f"the calibration needs at least one image, got {count}")
    if count >= len(images):
        return list(images)
    return [images[index * len(images) // count] for index in range(count)]


def calibration_images(model: onnx.ModelProto) -> list[str]:
    """The file names a model was calibrated on (by :func:`quantize`), empty when not recorded."""
    recorded = next((p.value for p in model.metadata_props if p.key == CALIBRATION_KEY), None)
    return json.loads(recorded) if recorded else []


def quantize(model: ModelLike, data=None, *, calibration_images: int = DEFAULT_CALIBRATION_IMAGES) -> onnx.ModelProto:
    """``model`` quantized to int8 (see the module docstring), calibrated on ``calibration_images`` images of
    ``data`` (a dataset folder; None: the built-in ImageNet samples)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    original = load_model(model)
    initializers = {t.name for t in original.graph.initializer}
    inputs = [i for i in original.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"calibrating on images needs a model with one input, this one has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        shape = "x".join(d.dim_param or str(d.dim_value) for d in dims) or "of unknown shape"
        raise UnsupportedModelError(f"calibrating on images needs an image input [N, 3, H, W]; the model's "
                                    f"input {inputs[0].name!r} is {shape}")
    quantized = sorted({n.op_type for n in original.graph.node if n.op_type in QUANTIZED_OPS})
    if quantized:
        raise UnsupportedModelError(f"the model is quantized already (it has {', '.join(quantized)} nodes)")
    spec = PreprocessingSpec.from_model(original)
    chosen = calibration_subset(load_dataset(data), calibration_images)
    fixed_batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    if fixed_batch and len(chosen) < fixed_batch:
        raise UserError(f"the model's batch size is fixed to {fixed_batch}: calibrate it on at least {fixed_batch} "
                        f"images, not {len(chosen)}")
    input_name = inputs[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.pending = batches(chosen, spec, fixed_batch or CALIBRATION_BATCH)

        def get_next(self) -> Optional[dict]:
            batch = next(self.pending, None)
            if batch is None:
                return None
            if fixed_batch and len(batch[0]) != fixed_batch:
                return self.get_next()  # a model of fixed batch size takes whole batches only
            return {input_name: batch[0]}

    with tempfile.TemporaryDirectory(prefix="onnxpred-quantize-") as folder:
        source, prepared, target = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        large = needs_external_data(original)
        write_model(original, source, external_data=large)
        try:
            with _quiet_quantizer():
                quant_pre_process(str(source), str(prepared), save_as_external_data=large, all_tensors_to_one_file=True)
                quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                use_external_data_format=large)
        except (ValueError, RuntimeError, KeyError, TypeError, onnx.checker.ValidationError, *onnxruntime_errors()
                ) as error:
            raise UnsupportedModelError(f"onnxruntime's quantizer cannot quantize the model: {first_line(error)}"
                                        ) from error
        quantized = onnx.load(str(target))
    onnx.helper.set_model_props(quantized, {**{p.key: p.value for p in quantized.metadata_props},
                                            CALIBRATION_KEY: json.dumps([image.path.name for image in chosen])})
    return quantized


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger; the command's output says what happened."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.root.setLevel(level)
