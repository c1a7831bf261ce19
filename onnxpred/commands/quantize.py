"""``onnxpred quantize``: a float model quantized to int8 by onnxruntime's static quantizer (QDQ format,
per-channel int8 weights, uint8 activations) on calibration images, ready for ``onnxpred rewrite``.

The output defaults to ``<input stem>.int8.onnx`` beside the input and is written atomically, never over
the input (with its tensors in ``<output>.data`` beyond 2 GB). Exit codes: 0 done, 2 bad arguments,
3 unreadable model or data, 4 a model the quantizer
cannot handle, 5 output not writable or the input itself.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..model_io import check_output_path, model_files, needs_external_data, staged_output, write_model
from ..quantization import DEFAULT_CALIBRATION_IMAGES, quantize
from .report import positive_int

NAME = "quantize"
HELP = "quantize a float model to int8 (QDQ, per-channel weights, uint8 activations) on calibration images"


def add_arguments(parser) -> None:
    parser.add_argument("model", type=Path, help="the float ONNX model (e.g. from `onnxpred export`)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="calibration images: labels.csv or wnid folders (default: the 20 built-in ImageNet "
                             "samples)")
    parser.add_argument("--calibration-images", type=positive_int, default=DEFAULT_CALIBRATION_IMAGES, metavar="N",
                        help=f"calibrate on N images spread evenly over the data set (default "
                             f"{DEFAULT_CALIBRATION_IMAGES}); their names are kept in the model's metadata")
    parser.add_argument("-o", "--output", type=Path,
                        help="the quantized model (default: <model stem>.int8.onnx beside the model)")


def default_output(model: Path) -> Path:
    return model.with_name(f"{model.stem}.int8.onnx")


def run(args) -> int:
    output = args.output or default_output(args.model)
    check_output_path(output, model_files(args.model))  # before the work, not after it
    quantized = quantize(args.model, args.data, calibration_images=args.calibration_images)
    external_data = needs_external_data(quantized)
    with staged_output(output) as staged:
        write_model(quantized, staged, external_data=external_data)
    ops = Counter(node.op_type for node in quantized.graph.node)
    data = f" and {output.name}.data" if external_data else ""
    print(f"wrote {output}{data}: {ops['QuantizeLinear']} QuantizeLinear and {ops['DequantizeLinear']} "
          f"DequantizeLinear "
          f"nodes around {ops['Conv']} Conv layers; next: onnxpred rewrite {output}")
    return 0
