"""Cross-check of the compiled op against an independent simulation of the rewritten model.

The simulation is ``onnx.reference.ReferenceEvaluator`` (ONNX's NumPy executor) with PredictiveConv
implemented by :func:`onnxpred.reference.predictive_conv`. Two comparisons, both over the same images:

- end to end: the whole rewritten graph runs in onnxruntime with the compiled op and in the simulation.
  This is what a network does: predictions change the activations that later layers see.
- same inputs: each PredictiveConv of the simulation gets exactly the X (and Z) that the compiled op got
  in onnxruntime, which isolates the op from everything upstream.

Exact equality is not expected. The op sums in float32 in its own order, the reference in float64, and
the other nodes run in onnxruntime on one side and NumPy on the other. A pre-activation within rounding
error of zero can come out exactly zero on one side only; that flips the prediction of a whole window.
With the same inputs that happens to very few windows (EfficientNet-Lite0, 100 images of
imagenet-sample-dev at k = 2 and 3: at most one window per layer, 1e-6 of its outputs). End to end each
flip nudges every later layer and flips accumulate (there: up to 4e-5 of a layer's outputs). So each
counter of each layer may differ by ``same_inputs_tolerance`` × the layer's outputs with the same inputs
and by ``end_to_end_tolerance`` × them end to end, and every image must get the same top-1 class. A bug
in a special case of the kernel (edge windows, a channel block) changes far more than that.

A quantized model's PredictiveQLinearConv is integer arithmetic and equals its reference exactly, so with
the same inputs nothing may differ (tolerance 0). End to end the simulation computes the layers left to
onnxruntime (depthwise and projection Convs) as DequantizeLinear → float Conv → QuantizeLinear, where
onnxruntime runs int8 kernels: an output on a rounding boundary lands on the neighbouring quantum and
the difference travels on (EfficientNet-Lite0 int8, 4 images at k = 3: up to 2e-3 of a layer's
outputs), so the end-to-end tolerance of a quantized model is :data:`QUANTIZED_END_TO_END_TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_19
from onnx.reference.ops.op_quantize_linear import QuantizeLinear_19
from tqdm import tqdm

from .. import op, reference, reference_quantized
from ..datasets import LabelledImage, PreprocessingSpec, batches, load_dataset
from ..model_io import load_model
from ..rewriter import rewrite
from ..rewriter.selection import Predictor
from ..runtime import session
from .evaluate import batch_size_for, eligible_layers, with_outputs
from .report import ModelSource, PathLike
from .scales import preactivation_sd

# Counters both sides must reproduce. macs_executed is left out: the reference executes exactly the
# non-predicted outputs, the kernel may compute more (docs/predictive_conv.md), so only that lower bound is checked.
COMPARED_COUNTERS = ("outputs", "zero_diag", "predicted", "pred_hit", "pred_miss", "macs_dense")
_COMPARED = [op.COUNTER_NAMES.index(name) for name in COMPARED_COUNTERS]
SAME_INPUTS_TOLERANCE = 1e-5
END_TO_END_TOLERANCE = 1e-3
QUANTIZED_END_TO_END_TOLERANCE = 1e-2


class PredictiveConv(OpRun):
    """``ai.onnxpred::PredictiveConv`` for the ReferenceEvaluator (it finds the class by this name)."""

    op_domain = op.DOMAIN

    def _run(self, x, w, b=None, z=None, **_):
        attributes = op.node_attributes(self.onnx_node)  # checked, with the contract's defaults
        attributes.pop("kernel_shape", None)  # W's shape; the op checks that they agree
        attributes["audit"] = bool(attributes["audit"])
        y, counters = reference.predictive_conv(x, w, b, z, **attributes)
        return (y, counters)[: len(self.onnx_node.output)]


class PredictiveQLinearConv(OpRun):
    """``ai.onnxpred::PredictiveQLinearConv`` for the ReferenceEvaluator, by
    :func:`onnxpred.reference_quantized.predictive_qlinear_conv`."""

    op_domain = op.DOMAIN

    def _run(self, *inputs, **_):
        attributes = op.node_attributes(self.onnx_node)
        attributes.pop("kernel_shape", None)
        attributes["audit"] = bool(attributes["audit"])
        y, counters = reference_quantized.predictive_qlinear_conv(*inputs, **attributes)
        return (y, counters)[: len(self.onnx_node.output)]


# onnx's evaluator implements (De)QuantizeLinear from opset 19 on, which for integer types computes what
# opsets 13 to 18 define: it stands in for those (onnxruntime's quantizer writes opset 13+ models).
_QUANTIZE_OPSET = 19


class DequantizeLinear(DequantizeLinear_19):
    op_domain = ""

    def _run(self, x, x_scale, x_zero_point=None, axis=1, **_):  # the newest schema's attributes are unset
        return super()._run(x, x_scale, x_zero_point, axis=axis)


class QuantizeLinear(QuantizeLinear_19):
    op_domain = ""

    def _run(self, x, y_scale, zero_point=None, axis=1, **_):
        return super()._run(x, y_scale, zero_point, axis=axis)


def simulator(model: onnx.ModelProto | onnx.NodeProto) -> ReferenceEvaluator:
    """A NumPy executor of a rewritten model (or of one PredictiveConv or PredictiveQLinearConv node)."""
    new_ops = [PredictiveConv, PredictiveQLinearConv]
    if isinstance(model, onnx.ModelProto):
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), _QUANTIZE_OPSET)
        new_ops += [DequantizeLinear, QuantizeLinear] if opset < _QUANTIZE_OPSET else []
    return ReferenceEvaluator(model, new_ops=new_ops)


@dataclass
class LayerComparison:
    """One layer's counters summed over images: the compiled op's, the end-to-end simulation's and the
    reference's on the op's own inputs."""

    name: str
    op: np.ndarray
    end_to_end: np.ndarray
    same_inputs: np.ndarray

    @staticmethod
    def _differences(ours: np.ndarray, theirs: np.ndarray) -> dict[str, int]:
        return {name: int(ours[i] - theirs[i]) for name, i in zip(COMPARED_COUNTERS, _COMPARED)}

    def differences(self) -> dict[str, dict[str, int]]:
        """Non-zero counter differences (op − simulation), per comparison."""
        return {label: {name: value for name, value in self._differences(self.op, other).items() if value}
                for label, other in (("end to end", self.end_to_end), ("same inputs", self.same_inputs))}

    def within(self, tolerances: dict[str, float]) -> bool:
        """Every difference is at most ``tolerances[comparison]`` × the layer's outputs."""
        outputs = self.op[op.COUNTER_NAMES.index("outputs")]
        return all(abs(value) <= tolerances[label] * outputs for label, differences in self.differences().items()
                   for value in differences.values())

    def executes_enough(self) -> bool:
        """The op's macs_executed is at least (outputs − predicted) · MACs per output."""
        named = dict(zip(op.COUNTER_NAMES, self.op.tolist()))
        macs_per_output = named["macs_dense"] // max(1, named["outputs"])
        return named["macs_executed"] >= (named["outputs"] - named["predicted"]) * macs_per_output


@dataclass
class Crosscheck:
    configuration: str  # the predictor's label, "k=3" or "k=3 checkerboard m=0.5sd"
    tolerances: dict[str, float]  # by comparison: "end to end", "same inputs"
    images: int = 0
    top1_equal: int = 0
    max_logit_difference: float = 0.0
    layers: list[LayerComparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.top1_equal == self.images
                and all(layer.within(self.tolerances) and layer.executes_enough() for layer in self.layers))

    def lines(self) -> list[str]:
        """A human-readable account: totals, then every layer that differs at all."""
        lines = [f"{self.configuration}: {self.images} images, top-1 equal on {self.top1_equal}, "
                 f"max |logit difference| {self.max_logit_difference:.3g}"]
        for layer in self.layers:
            differences = layer.differences()
            if any(differences.values()) or not layer.executes_enough():
                details = [f"{label}: " + ", ".join(f"{name} {value:+d}" for name, value in values.items())
                           for label, values in differences.items() if values]
                if not layer.executes_enough():
                    details.append("macs_executed below (outputs - predicted) x MACs per output")
                verdict = "ok" if layer.within(self.tolerances) and layer.executes_enough() else "FAILS"
                lines.append(f"  {layer.name} ({int(layer.op[0]):,} outputs): {'; '.join(details)} ({verdict})")
        for label, tolerance in self.tolerances.items():
            identical = sum(not layer.differences()[label] for layer in self.layers)
            lines.append(f"  {label}: {identical} of {len(self.layers)} layers have identical counters "
                         f"(tolerance per counter: {tolerance:g} x the layer's outputs)")
        lines.append("PASSED" if self.passed else "FAILED")
        return lines


def crosscheck(
    model: ModelSource,
    data: Optional[PathLike] = None,
    window: int = 3,
    *,
    pattern: Optional[str] = None,
    margin: Union[float, str, None] = None,
    limit: Optional[int] = None,
    end_to_end_tolerance: Optional[float] = None,
    same_inputs_tolerance: Optional[float] = None,
    batch_size: int = 1,
    threads: Optional[int] = None,
    progress: bool = True,
) -> Crosscheck:
    """Rewrite ``model`` with ``window``, ``pattern`` and ``margin`` (absolute, or ``"0.5sd"`` measured on the
    same images) and compare the compiled op with the simulation on the first ``limit`` images of ``data``
    (all when None; the default data set when ``data`` is None). Tolerances left None are the module's,
    for a float or a quantized model (see the module docstring)."""
    original = load_model(model)
    spec = PreprocessingSpec.from_model(original)
    images = load_dataset(data)[:limit]
    predictor = Predictor.create(window, pattern, margin)
    scales = None
    if predictor.margin.in_sd:
        scales = preactivation_sd(original, rewrite(original, window=1), images, spec, threads=threads)
    rewritten = rewrite(original, window=window, pattern=pattern, margin=margin, scales=scales, audit=True,
                        expose_counters=True)
    quantized = all(op.is_predictive_qlinear_conv(node) for node in rewritten.graph.node if op.is_contract_op(node))
    defaults = (QUANTIZED_END_TO_END_TOLERANCE, 0.0) if quantized else (END_TO_END_TOLERANCE, SAME_INPUTS_TOLERANCE)
    tolerances = {"end to end": defaults[0] if end_to_end_tolerance is None else end_to_end_tolerance,
                  "same inputs": defaults[1] if same_inputs_tolerance is None else same_inputs_tolerance}
    return compare_with_simulation(rewritten, str(predictor), images, spec, tolerances,
                                   batch_size=batch_size_for(original, batch_size, len(images)), threads=threads,
                                   progress=progress)


def compare_with_simulation(
    rewritten: onnx.ModelProto,
    configuration: str,
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    tolerances: dict[str, float],
    *,
    batch_size: int = 1,
    threads: Optional[int] = None,
    progress: bool = True,
) -> Crosscheck:
    """Run ``images`` through ``rewritten`` (audit = 1, counters exposed) in onnxruntime with the compiled op
    and in the NumPy simulation, and compare counters, logits and top-1 classes."""
    layers = eligible_layers(rewritten)
    nodes = {node.name: node for node in rewritten.graph.node}
    layer_nodes = [nodes[layer.name] for layer in layers]
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in rewritten.graph.initializer}
    input_name = rewritten.graph.input[0].name
    # The tensors computed before each PredictiveConv (X and Z) come back from onnxruntime as well.
    computed_inputs = sorted({name for node in layer_nodes for name in node.input
                              if name and name not in constants and name != input_name})
    outputs = [rewritten.graph.output[0].name, *(layer.counters for layer in layers)]
    options = {"intra_op_num_threads": threads} if threads else {}
    compiled = session(with_outputs(rewritten, computed_inputs), **options)
    simulated = simulator(rewritten)
    node_simulators = [simulator(node) for node in layer_nodes]
    result = Crosscheck(configuration, tolerances)
    counters = np.zeros((3, len(layers), len(op.COUNTER_NAMES)), dtype=np.int64)  # op, end to end, same inputs
    with tqdm(total=len(images), unit="img", desc=f"cross-checking {configuration}", disable=not progress) as bar:
        for pixels, _ in batches(images, spec, batch_size):
            feeds = {input_name: pixels}
            op_logits, *op_values = compiled.run(outputs + computed_inputs, feeds)
            op_counters, op_inputs = op_values[:len(layers)], dict(zip(computed_inputs, op_values[len(layers):]))
            sim_logits, *sim_counters = simulated.run(outputs, feeds)
            values = {**constants, **op_inputs, **feeds}
            local_counters = [node_simulator.run(None, {name: values[name] for name in node.input if name})[1]
                              for node, node_simulator in zip(layer_nodes, node_simulators)]
            counters += np.stack([op_counters, sim_counters, local_counters])
            result.images += len(pixels)
            result.top1_equal += int((op_logits.argmax(axis=1) == sim_logits.argmax(axis=1)).sum())
            result.max_logit_difference = max(result.max_logit_difference,
                                              float(np.abs(op_logits - sim_logits).max()))
            bar.update(len(pixels))
    result.layers = [LayerComparison(layer.name, *counters[:, index]) for index, layer in enumerate(layers)]
    return result
