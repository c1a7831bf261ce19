"""``onnxpred export``: write one of the study's CNNs as ONNX (needs torch: ``pip install onnxpred[models]``).

The output defaults to ``<name>.onnx`` in the current folder and is written atomically. Exit codes:
0 done, 2 unknown model or torch missing, 3 unreadable weights, 5 output not writable.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..errors import UserError
from ..model_io import staged_output

NAME = "export"
HELP = "export alexnet, vgg16, resnet18 or efficientnet_lite0/1/2 to ONNX (opset 17, input 'input', output 'logits')"


def add_arguments(parser) -> None:
    parser.add_argument("name", help="the model, one of onnxpred.models.MODEL_NAMES")
    parser.add_argument("-o", "--output", type=Path, help="the ONNX file (default: <name>.onnx)")
    parser.add_argument("--weights", type=Path, metavar="CKPT",
                        help="a PyTorch state dict (default: packaged weights, else random ones)")
    parser.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension")
    parser.add_argument("--batch-size", type=int, default=1, help="the static batch size (default 1)")


def run(args) -> int:
    try:
        from ..models.export import export_model
    except ImportError as error:
        raise UserError(f"export needs torch ({error}); install it with pip install 'onnxpred[models]'") from error
    output = args.output or Path(f"{args.name}.onnx")
    with warnings.catch_warnings(record=True) as caught, staged_output(output) as staged:
        warnings.simplefilter("default", UserWarning)
        model = export_model(args.name, staged, weights=args.weights, dynamic_batch=args.dynamic_batch,
                             batch_size=args.batch_size)
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"note: {warning.message}", file=sys.stderr)
    shape = "x".join(d.dim_param or str(d.dim_value) for d in model.graph.input[0].type.tensor_type.shape.dim)
    print(f"wrote {output}: {len(model.graph.node)} nodes, input {model.graph.input[0].name} {shape}")
    return 0
