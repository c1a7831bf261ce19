"""``rewrite``: Conv patterns of an ONNX model → ``ai.onnxpred::PredictiveConv``; ``set_windows``."""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import onnx
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

from .. import op
from ..runtime import ModelLike
from .graph import GraphContext
from .model_io import load_model
from .passes.fold_batch_norm import FoldBatchNorm
from .passes.fold_pad import FoldPad
from .passes.fuse_predictive_conv import FusePredictiveConv
from .passes.name_layers import NameLayers
from .passes.resolve_auto_pad import ResolveAutoPad
from .selection import LayerSelection, WindowChoice, check_names, check_window
from .shapes import infer_shapes
from .summary import RewriteSummary

# In order: explicit pads first, so that a folded Pad adds to them.
PRE_PASSES = (ResolveAutoPad, FoldBatchNorm, FoldPad)


def rewrite_with_summary(
    model_or_path: ModelLike,
    window: int = 3,
    *,
    layers: Optional[Iterable[str]] = None,
    exclude: Optional[Iterable[str]] = None,
    window_map: Optional[Mapping[str, int]] = None,
    audit: bool = False,
    expose_counters: bool = False,
) -> tuple[onnx.ModelProto, RewriteSummary]:
    """Rewrite a model and say what was rewritten and what was left alone, and why.

    ``model_or_path``: a path (external data is read from beside it), serialized bytes or a
    ModelProto (not changed). ``window``: k for every rewritten layer, except those named in
    ``window_map``. ``layers`` / ``exclude``: layer (Conv node) names to rewrite only / to leave
    alone. ``audit``: PredictiveConv's audit attribute. ``expose_counters``: each PredictiveConv's
    counters become the graph output ``<layer>.counters``.
    """
    model = load_model(model_or_path)
    infer_shapes(model)
    ctx = GraphContext.from_model(model)
    named = NameLayers()(ctx)  # before the selection, which is by name
    selection = LayerSelection.create(
        [layer.name for layer in ctx.convs()], window, window_map, layers, exclude
    )
    prepasses = {NameLayers.description: named.changes} if named.changes else {}
    for pass_type in PRE_PASSES:
        result = pass_type(in_scope=lambda layer: selection.skip_reason(layer.name) is None)(ctx)
        if result.changes:
            prepasses[pass_type.description] = result.changes
    fusion = FusePredictiveConv(selection, audit=audit, expose_counters=expose_counters)(ctx)
    return _with_graph(model, ctx), RewriteSummary(fusion.rewritten, fusion.left_alone, prepasses)


def rewrite(model_or_path: ModelLike, window: int = 3, **options) -> onnx.ModelProto:
    """:func:`rewrite_with_summary` without the summary."""
    return rewrite_with_summary(model_or_path, window, **options)[0]


def _with_graph(model: onnx.ModelProto, ctx: GraphContext) -> onnx.ModelProto:
    """``model`` (ours to change) with the rewritten graph; every model-level field is kept."""
    graph = OnnxExporter.export_graph(ctx.graph, do_type_check=False)
    # gs drops initializers listed as graph inputs from the inputs: keep the original input list.
    kept = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    inputs = [i for i in model.graph.input if i.name in kept]
    graph.ClearField("input")
    graph.input.extend(inputs)
    model.graph.CopyFrom(graph)
    if not any(o.domain == op.DOMAIN for o in model.opset_import):
        model.opset_import.append(op.opset_import())
    return model


def _predictive_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == op.DOMAIN and n.op_type == op.OP_TYPE]


def set_windows(model_or_path: ModelLike, windows: WindowChoice) -> onnx.ModelProto:
    """A copy of a rewritten model with other windows: one ``int`` for every PredictiveConv (1 turns
    prediction off), or ``{layer: k}`` for the layers named."""
    model = load_model(model_or_path)
    nodes = _predictive_convs(model)
    if isinstance(windows, Mapping):
        check_names(windows, [n.name for n in nodes], "windows")
        chosen = {name: check_window(k, f"window of layer {name!r}") for name, k in windows.items()}
    else:
        every = check_window(windows)
        chosen = {n.name: every for n in nodes}
    for node in nodes:
        if node.name not in chosen:
            continue
        window = next((a for a in node.attribute if a.name == "window"), None)
        if window is None:
            node.attribute.append(onnx.helper.make_attribute("window", chosen[node.name]))
        else:
            window.i = chosen[node.name]
    return model

