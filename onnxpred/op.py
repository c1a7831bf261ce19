"""The ``ai.onnxpred::PredictiveConv`` v1 contract: names, attributes, counters, a node builder and the
op's onnx schema, all read from the one table ``op_contract.json`` (the C++ library generates its
attribute table from the same file).

Semantics: ``docs/predictive_conv.md``; the executable definition is :mod:`onnxpred.reference`.
Importing this module registers the op's schema with onnx, so that ``onnx.checker`` refuses unknown or
ill-typed attributes and shape inference types ``Y`` and ``counters``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping, Optional, Sequence

import onnx
from onnx import AttributeProto, TensorProto, helper

from .errors import UnsupportedModelError

_CONTRACT = json.loads(resources.files(__package__).joinpath("op_contract.json").read_text())

DOMAIN: str = _CONTRACT["domain"]
OP_TYPE: str = _CONTRACT["op_type"]
OPSET_VERSION: int = _CONTRACT["version"]
COUNTER_NAMES: tuple[str, ...] = tuple(_CONTRACT["counters"])
INPUT_NAMES: tuple[str, ...] = tuple(i["name"] for i in _CONTRACT["inputs"])

_ONNX_TYPES = {
    "int": AttributeProto.INT,
    "float": AttributeProto.FLOAT,
    "string": AttributeProto.STRING,
    "ints": AttributeProto.INTS,
}
_TYPE_WORDS = {"int": "an int", "float": "a float", "string": "a string", "ints": "a list of ints"}


def _number(value: Any) -> Any:
    return math.inf if value == "inf" else value


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of the contract: its type, default (None: no default) and allowed values."""

    name: str
    type: str  # "int", "float", "string" or "ints"
    doc: str
    default: Any = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_minimum: Optional[float] = None
    finite: bool = False
    count: Optional[int] = None  # the number of values of an "ints"
    choices: Optional[tuple[str, ...]] = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "AttributeSpec":
        fields = dict(entry)
        if "choices" in fields:
            fields["choices"] = tuple(fields["choices"])
        if isinstance(fields.get("default"), list):
            fields["default"] = tuple(fields["default"])
        for key in ("default", "minimum", "maximum", "exclusive_minimum"):
            if key in fields:
                fields[key] = _number(fields[key])
        if fields["type"] == "float" and "default" in fields:
            fields["default"] = float(fields["default"])  # JSON writes 0.0 as 0
        return cls(**fields)

    @property
    def onnx_type(self) -> int:
        return _ONNX_TYPES[self.type]

    def check(self, value: Any, what: Optional[str] = None) -> Any:
        """``value`` in its canonical Python form (int, float, str, tuple of ints), or ValueError
        saying what is wrong with ``what`` (default: "attribute '<name>'")."""
        what = what or f"attribute {self.name!r}"
        if self.type == "ints":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{what} must be {_TYPE_WORDS[self.type]}, got {value!r}")
            values = tuple(self._int(v, what) for v in value)
            if self.count is not None and len(values) != self.count:
                raise ValueError(f"{what} must have {self.count} values, got {list(values)}")
            for v in values:
                self._check_range(v, what)
            return values
        if self.type == "int":
            value = self._int(value, what)
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{what} must be {_TYPE_WORDS[self.type]}, got {value!r}")
            value = float(value)
            if math.isnan(value) or (self.finite and not math.isfinite(value)):
                raise ValueError(f"{what} must be a finite number, got {value}")
        else:
            if isinstance(value, bytes):
                value = value.decode()
            if not isinstance(value, str):
                raise ValueError(f"{what} must be {_TYPE_WORDS[self.type]}, got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"{what} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        self._check_range(value, what)
        return value

    def _int(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            bounds = f" from {self.minimum:g} to {self.maximum:g}" if self.maximum is not None else ""
            raise ValueError(f"{what} must be an integer{bounds}, got {value!r}")
        return int(value)

    def _check_range(self, value: float, what: str) -> None:
        if self.type == "int" and self.minimum is not None and self.maximum is not None:
            if not self.minimum <= value <= self.maximum:
                raise ValueError(f"{what} must be an integer from {self.minimum:g} to {self.maximum:g}, got {value!r}")
            return
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{what} must be >= {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{what} must be <= {self.maximum:g}, got {value!r}")
        if self.exclusive_minimum is not None and not value > self.exclusive_minimum:
            raise ValueError(f"{what} must be > {self.exclusive_minimum:g}, got {value!r}")


ATTRIBUTES: dict[str, AttributeSpec] = {
    entry["name"]: AttributeSpec.from_json(entry) for entry in _CONTRACT["attributes"]
}
PATTERNS: tuple[str, ...] = ATTRIBUTES["pattern"].choices
ACTIVATIONS: tuple[str, ...] = ATTRIBUTES["activation"].choices
MAX_WINDOW: int = int(ATTRIBUTES["window"].maximum)
# The predictor's knobs: what a window map may set per layer (besides which layers are rewritten).
PREDICTOR_ATTRIBUTES = ("window", "pattern", "margin")


def defaults() -> dict[str, Any]:
    """Every attribute that has a default, with it: what an attribute-less node means."""
    return {name: spec.default for name, spec in ATTRIBUTES.items() if spec.default is not None}


def opset_import() -> onnx.OperatorSetIdProto:
    return helper.make_opsetid(DOMAIN, OPSET_VERSION)


class ContractError(UnsupportedModelError, ValueError):
    """A PredictiveConv node that breaks the contract: an unknown attribute or a value out of range."""


def is_predictive_conv(node: Any) -> bool:
    """Whether ``node`` (an ``onnx.NodeProto`` or an onnx-graphsurgeon ``Node``) is a PredictiveConv."""
    op_type = getattr(node, "op_type", None) or getattr(node, "op", None)
    return op_type == OP_TYPE and node.domain == DOMAIN


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The attributes of a PredictiveConv node, checked against the contract, defaults filled in.

    Raises :class:`ContractError` naming the node for an attribute the contract does not know (which
    onnxruntime would ignore, silently running with the default) or a value it does not allow.
    """
    _check_attribute_names(node)
    values = defaults()
    for attribute in node.attribute:
        spec = ATTRIBUTES[attribute.name]
        try:
            if attribute.type != spec.onnx_type:
                raise ValueError(f"attribute {attribute.name!r} must be {_TYPE_WORDS[spec.type]}")
            values[attribute.name] = spec.check(helper.get_attribute_value(attribute))
        except ValueError as error:
            raise ContractError(f"PredictiveConv node {node.name!r}: {error}") from None
    if values["activation"] != "Clip" and math.isfinite(values["clip_max"]):
        raise ContractError(f"PredictiveConv node {node.name!r}: attribute 'clip_max' is only valid with "
                            "activation \"Clip\"")
    return values


def _check_attribute_names(node: onnx.NodeProto) -> None:
    unknown = [a.name for a in node.attribute if a.name not in ATTRIBUTES]
    if unknown:
        raise ContractError(f"PredictiveConv node {node.name!r} has an attribute the op does not know: "
                            f"{unknown[0]!r} (its attributes: {', '.join(ATTRIBUTES)})")


def make_node(
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str,
    **attributes: Any,
) -> onnx.NodeProto:
    """A PredictiveConv node. ``inputs``: X, W[, B[, Z]] ("" for an omitted B); ``outputs``: Y[, counters].

    ``attributes`` are the contract's (``kernel_shape=[3, 3]``, ``window=3``, ``pattern="checkerboard"``, ...);
    each is checked against it. ``pattern``, ``margin`` and ``clip_max`` are written only where they
    differ from their defaults, so that a node with the defaults is the same as before they existed;
    None stands for the default.
    """
    values = {}
    for key, value in attributes.items():
        if key not in ATTRIBUTES:
            raise ValueError(f"PredictiveConv has no attribute {key!r} (known: {', '.join(ATTRIBUTES)})")
        if value is not None:
            values[key] = int(value) if key == "audit" else value
    checked = {key: ATTRIBUTES[key].check(value) for key, value in values.items()}
    for key in ("pattern", "margin", "clip_max"):
        if key in checked and checked[key] == ATTRIBUTES[key].default:
            del checked[key]
    checked = {key: list(value) if isinstance(value, tuple) else value for key, value in checked.items()}
    node = helper.make_node(OP_TYPE, list(inputs), list(outputs), name=name, domain=DOMAIN, **checked)
    node_attributes(node)  # the cross-attribute rules (clip_max only with Clip)
    return node


def check_model(model: onnx.ModelProto, *, names_only: bool = False) -> None:
    """Raise :class:`ContractError` if a PredictiveConv node of ``model`` breaks the contract (see
    :func:`node_attributes`); with ``names_only``, only for attributes the contract does not know."""
    for node in model.graph.node:
        if is_predictive_conv(node):
            _check_attribute_names(node) if names_only else node_attributes(node)


# --- The onnx schema, registered on import -------------------------------------------------------


def _infer_types(ctx) -> None:
    """Y: float32 [N, M, oH, oW] from X, W and the Conv attributes; counters: int64 [7]."""
    x_type, w_type = ctx.get_input_type(0), ctx.get_input_type(1)
    dims: list[Optional[int]] = [None] * 4
    x_dims = _dims(x_type)
    w_dims = _dims(w_type)
    if x_dims is not None:
        dims[0] = x_dims[0]
    if w_dims is not None:
        dims[1] = w_dims[0]
    if x_dims is not None and w_dims is not None:
        values = {}
        for name in ("strides", "pads", "dilations"):
            attribute = ctx.get_attribute(name)
            values[name] = list(attribute.ints) if attribute is not None else list(ATTRIBUTES[name].default)
        for axis in range(2):
            size, kernel = x_dims[2 + axis], w_dims[2 + axis]
            if size is None or kernel is None:
                continue
            padded = size + values["pads"][axis] + values["pads"][axis + 2]
            extent = values["dilations"][axis] * (kernel - 1) + 1
            if padded >= extent:
                dims[2 + axis] = (padded - extent) // values["strides"][axis] + 1
    y = helper.make_tensor_type_proto(TensorProto.FLOAT, dims if x_dims is not None else None)
    ctx.set_output_type(0, y)
    if ctx.get_num_outputs() > 1:
        ctx.set_output_type(1, helper.make_tensor_type_proto(TensorProto.INT64, [len(COUNTER_NAMES)]))


def _dims(type_proto) -> Optional[list[Optional[int]]]:
    if type_proto is None or not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in type_proto.tensor_type.shape.dim]
    return dims if len(dims) == 4 else None


def _schema() -> onnx.defs.OpSchema:
    schema_type = onnx.defs.OpSchema
    option = schema_type.FormalParameterOption

    def parameters(entries, type_str):
        return [
            schema_type.FormalParameter(
                entry["name"], type_str, entry["doc"],
                param_option=option.Optional if entry.get("optional") else option.Single,
            )
            for entry in entries
        ]

    attributes = []
    for spec in ATTRIBUTES.values():
        if spec.default is None:
            attributes.append(schema_type.Attribute(spec.name, schema_type.AttrType(spec.onnx_type), spec.doc,
                                                    required=False))
        else:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            attributes.append(schema_type.Attribute(spec.name, helper.make_attribute(spec.name, default), spec.doc))
    (y, counters) = _CONTRACT["outputs"]
    schema = schema_type(
        OP_TYPE, DOMAIN, OPSET_VERSION,
        "Conv (+ residual Z) + Relu/Clip(0, max) that computes the sampled outputs of each k x k window "
        "first and predicts the rest of a window zero when its samples are at most -margin.",
        inputs=parameters(_CONTRACT["inputs"], "T"),
        outputs=parameters([y], "T") + parameters([counters], "tensor(int64)"),
        type_constraints=[("T", ["tensor(float)"], "float32 tensors")],
        attributes=attributes,
    )
    schema.set_type_and_shape_inference_function(_infer_types)
    return schema


def register_schema() -> None:
    """Register the op with onnx (once per process; importing onnxpred does it)."""
    try:
        onnx.defs.get_schema(OP_TYPE, OPSET_VERSION, DOMAIN)
    except onnx.defs.SchemaError:
        onnx.defs.register_schema(_schema())


register_schema()
