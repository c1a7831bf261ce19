"""``rewrite``: Conv patterns of an ONNX model → ``ai.onnxpred::PredictiveConv``; ``set_windows``."""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence, Union

import onnx
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

from .. import op
from ..runtime import ModelLike
from .graph import GraphContext
from ..model_io import load_model
from .passes.fold_batch_norm import FoldBatchNorm
from .passes.fold_pad import FoldPad
from .passes.channels_last import MICROSOFT_DOMAIN, ChannelsLast
from .passes.fuse_predictive_conv import FusePredictiveConv
from .passes.name_layers import NameLayers
from .passes.order_channels import OrderChannels
from .passes.resolve_auto_pad import ResolveAutoPad
from .selection import LayerSelection, Margin, Predictor, PredictorChoice, check_names
from .shapes import infer_shapes
from .summary import RewriteSummary

# In order: explicit pads first, so that a folded Pad adds to them.
PRE_PASSES = (ResolveAutoPad, FoldBatchNorm, FoldPad)


def rewrite_with_summary(
    model_or_path: ModelLike,
    window: int = 3,
    *,
    pattern: Optional[str] = None,
    margin: Union[Margin, float, str, None] = None,
    layers: Optional[Iterable[str]] = None,
    exclude: Optional[Iterable[str]] = None,
    window_map: Optional[Mapping[str, PredictorChoice]] = None,
    scales: Optional[Mapping[str, float]] = None,
    audit: bool = False,
    expose_counters: bool = False,
    channels_last: bool = False,
    channel_activity: Optional[Mapping[str, Sequence[float]]] = None,
) -> tuple[onnx.ModelProto, RewriteSummary]:
    """Rewrite a model and say what was rewritten and what was left alone, and why.

    ``model_or_path``: a path (external data is read from beside it), serialized bytes or a
    ModelProto (not changed). ``window``, ``pattern``, ``margin``: the predictor of every rewritten
    layer (defaults: the op's), except those named in ``window_map``, whose entries are ``k`` or
    ``{"window": k, "pattern": ..., "margin": ...}`` (missing keys: the command-wide settings).
    A margin is absolute (``0.35``) or relative to the layer's pre-activation standard deviation
    (``"0.5sd"``), which ``scales`` must then give per layer
    (:func:`onnxpred.evaluation.scales.preactivation_sd` measures it). ``layers`` / ``exclude``: layer
    (Conv node) names to rewrite only / to leave alone. ``audit``: PredictiveConv's audit attribute.
    ``expose_counters``: each PredictiveConv's counters become the graph output ``<layer>.counters``.
    ``channels_last``: the int8 layers and the 8-bit MaxPools between them run NHWC, as onnxruntime runs
    its own int8 model (:class:`~onnxpred.rewriter.passes.channels_last.ChannelsLast`): the form to deploy;
    without it every rewritten layer reads and writes its original NCHW tensors.
    ``channel_activity``: per layer, each output channel's share of active outputs
    (:func:`onnxpred.evaluation.scales.preactivation_activity` measures it); those layers' channels are
    ordered by it (:class:`~onnxpred.rewriter.passes.order_channels.OrderChannels`), which changes no
    result but lets windows skip whole blocks of rarely active channels.
    A model that already holds PredictiveConv nodes must keep to the op's contract.
    """
    model = load_model(model_or_path)
    op.check_model(model)
    infer_shapes(model)
    ctx = GraphContext.from_model(model)
    named = NameLayers()(ctx)  # before the selection, which is by name
    selection = LayerSelection.create(
        [layer.name for layer in ctx.convs()], Predictor.create(window, pattern, margin), window_map, layers, exclude
    )
    prepasses = {NameLayers.description: named.changes} if named.changes else {}
    for pass_type in PRE_PASSES:
        result = pass_type(in_scope=lambda layer: selection.skip_reason(layer.name) is None)(ctx)
        if result.changes:
            prepasses[pass_type.description] = result.changes
    fusion = FusePredictiveConv(selection, scales=scales, audit=audit, expose_counters=expose_counters)(ctx)
    if channel_activity:
        ordering = OrderChannels(channel_activity)
        ordered = ordering(ctx)
        if ordered.changes:
            prepasses[OrderChannels.description] = ordered.changes
        if ordering.kept:
            prepasses[OrderChannels.kept_description] = ordering.kept
    if channels_last:
        layout = ChannelsLast()(ctx)
        if layout.changes:
            prepasses[ChannelsLast.description] = layout.changes
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
    if any(node.domain == MICROSOFT_DOMAIN for node in graph.node) and not any(
            o.domain == MICROSOFT_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MICROSOFT_DOMAIN, 1))
    return model


def set_windows(
    model_or_path: ModelLike,
    windows: Union[PredictorChoice, Mapping[str, PredictorChoice]],
    *,
    scales: Optional[Mapping[str, float]] = None,
) -> onnx.ModelProto:
    """A copy of a rewritten model with other predictor settings: one ``int`` (a window; 1 turns
    prediction off) or :class:`Predictor` for every PredictiveConv and PredictiveQLinearConv, or
    ``{layer: k or {"window": ..., "pattern": ..., "margin": ...} or Predictor}`` for the layers named
    (settings not given are kept).
    ``scales``: per-layer pre-activation standard deviations, for margins given in sd units."""
    model = load_model(model_or_path)
    nodes = [node for node in model.graph.node if op.is_contract_op(node)]
    current = {node.name: _predictor_of(node) for node in nodes}
    if isinstance(windows, Mapping):
        check_names(windows, current, "windows")
        chosen = {name: current[name].updated(choice, f"layer {name!r}") for name, choice in windows.items()}
    else:
        chosen = {name: predictor.updated(windows, "every layer") for name, predictor in current.items()}
    for node in nodes:
        if node.name in chosen:
            _set_attributes(node, chosen[node.name].attributes(node.name, scales))
    return model


def _predictor_of(node: onnx.NodeProto) -> Predictor:
    values = op.node_attributes(node)
    return Predictor(values["window"], values["pattern"], Margin(values["margin"]))


def _set_attributes(node: onnx.NodeProto, values: Mapping[str, object]) -> None:
    """Replace ``node``'s predictor attributes by ``values`` the way :func:`onnxpred.op.make_node` writes them."""
    written = op.make_node(node.input, node.output, name=node.name, op_type=node.op_type, **values)
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept + [a for a in written.attribute if a.name in values])
