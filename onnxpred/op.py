"""The contract of the ``ai.onnxpred`` ops, ``PredictiveConv`` v1 (float32) and ``PredictiveQLinearConv`` v1
(int8): names, inputs, attributes, counters, one node builder and the ops' onnx schemas, all read from the
one table ``op_contract.json`` (the C++ library generates its attribute table from the same file). Every
attribute is defined once there; each op lists the ones it takes.

Semantics: ``docs/predictive_conv.md``; the executable definitions are :mod:`onnxpred.reference` and
:mod:`onnxpred.reference_quantized`. Importing this module registers both schemas with onnx, so that
``onnx.checker`` refuses unknown or ill-typed attributes and shape inference types ``Y`` and ``counters``.

The module-level ``OP_TYPE``, ``OPSET_VERSION``, ``INPUT_NAMES`` name the float32 op; ``OPS`` holds both
(:class:`OpSpec`), and the functions take an ``op_type`` where the op matters.
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
COUNTER_NAMES: tuple[str, ...] = tuple(_CONTRACT["counters"])

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


# Every attribute of the contract, each defined once; an op takes some of them (OpSpec.attributes).
ATTRIBUTES: dict[str, AttributeSpec] = {
    entry["name"]: AttributeSpec.from_json(entry) for entry in _CONTRACT["attributes"]
}


@dataclass(frozen=True)
class OpSpec:
    """One op of the contract: its name, version, inputs, outputs and the attributes it takes."""

    op_type: str
    version: int
    summary: str
    inputs: tuple[Mapping[str, Any], ...]
    outputs: tuple[Mapping[str, Any], ...]
    type_constraints: Mapping[str, tuple[str, ...]]
    attributes: Mapping[str, AttributeSpec]

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "OpSpec":
        return cls(entry["op_type"], entry["version"], entry["summary"], tuple(entry["inputs"]),
                   tuple(entry["outputs"]),
                   {name: tuple(types) for name, types in entry["type_constraints"].items()},
                   {name: ATTRIBUTES[name] for name in entry["attributes"]})

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(entry["name"] for entry in self.inputs)

    def defaults(self) -> dict[str, Any]:
        return {name: spec.default for name, spec in self.attributes.items() if spec.default is not None}


OPS: dict[str, OpSpec] = {entry["op_type"]: OpSpec.from_json(entry) for entry in _CONTRACT["ops"]}
PREDICTIVE_CONV, PREDICTIVE_QLINEAR_CONV = OPS["PredictiveConv"], OPS["PredictiveQLinearConv"]
OP_TYPE: str = PREDICTIVE_CONV.op_type
OPSET_VERSION: int = PREDICTIVE_CONV.version
INPUT_NAMES: tuple[str, ...] = PREDICTIVE_CONV.input_names
QLINEAR_OP_TYPE: str = PREDICTIVE_QLINEAR_CONV.op_type
QLINEAR_INPUT_NAMES: tuple[str, ...] = PREDICTIVE_QLINEAR_CONV.input_names
if len({spec.version for spec in OPS.values()}) != 1:
    raise RuntimeError("op_contract.json: the ops of one domain share its opset version")  # opset_import()

PATTERNS: tuple[str, ...] = ATTRIBUTES["pattern"].choices
ACTIVATIONS: tuple[str, ...] = ATTRIBUTES["activation"].choices
MAX_WINDOW: int = int(ATTRIBUTES["window"].maximum)
# The predictor's knobs: what a window map may set per layer (besides which layers are rewritten).
PREDICTOR_ATTRIBUTES = ("window", "pattern", "margin")


def defaults(op_type: str = OP_TYPE) -> dict[str, Any]:
    """Every attribute of ``op_type`` that has a default, with it: what an attribute-less node means."""
    return _op(op_type).defaults()


def _op(op_type: str) -> OpSpec:
    if op_type not in OPS:
        raise ValueError(f"unknown op {op_type!r} (the contract's: {', '.join(OPS)})")
    return OPS[op_type]


def opset_import() -> onnx.OperatorSetIdProto:
    return helper.make_opsetid(DOMAIN, OPSET_VERSION)


class ContractError(UnsupportedModelError, ValueError):
    """A node of the contract's ops that breaks it: an unknown attribute or a value out of range."""


def _node_op_type(node: Any) -> Optional[str]:
    """The op type of an ``onnx.NodeProto`` or an onnx-graphsurgeon ``Node`` when it is one of the
    contract's ops, else None."""
    op_type = getattr(node, "op_type", None) or getattr(node, "op", None)
    return op_type if op_type in OPS and node.domain == DOMAIN else None


def is_predictive_conv(node: Any) -> bool:
    """Whether ``node`` (an ``onnx.NodeProto`` or an onnx-graphsurgeon ``Node``) is a (float32) PredictiveConv."""
    return _node_op_type(node) == OP_TYPE


def is_predictive_qlinear_conv(node: Any) -> bool:
    """Whether ``node`` (an ``onnx.NodeProto`` or an onnx-graphsurgeon ``Node``) is a PredictiveQLinearConv."""
    return _node_op_type(node) == QLINEAR_OP_TYPE


def has_quantized_layers(model: onnx.ModelProto) -> bool:
    """Whether any node of ``model`` is a PredictiveQLinearConv."""
    return any(is_predictive_qlinear_conv(node) for node in model.graph.node)


def is_contract_op(node: Any) -> bool:
    """Whether ``node`` is either op of the contract (both have the predictor attributes and counters)."""
    return _node_op_type(node) is not None


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The attributes of a node of either op, checked against the contract, defaults filled in.

    Raises :class:`ContractError` naming the node for an attribute its op does not take (which
    onnxruntime would ignore, silently running with the default) or a value it does not allow.
    """
    spec = _op(node.op_type)
    _check_attribute_names(node)
    values = spec.defaults()
    for attribute in node.attribute:
        attribute_spec = spec.attributes[attribute.name]
        try:
            if attribute.type != attribute_spec.onnx_type:
                raise ValueError(f"attribute {attribute.name!r} must be {_TYPE_WORDS[attribute_spec.type]}")
            values[attribute.name] = attribute_spec.check(helper.get_attribute_value(attribute))
        except ValueError as error:
            raise ContractError(f"{node.op_type} node {node.name!r}: {error}") from None
    if "activation" in values and values["activation"] != "Clip" and math.isfinite(values["clip_max"]):
        raise ContractError(f"{node.op_type} node {node.name!r}: attribute 'clip_max' is only valid with "
                            "activation \"Clip\"")
    return values


def _check_attribute_names(node: onnx.NodeProto) -> None:
    known = _op(node.op_type).attributes
    unknown = [a.name for a in node.attribute if a.name not in known]
    if unknown:
        raise ContractError(f"{node.op_type} node {node.name!r} has an attribute the op does not know: "
                            f"{unknown[0]!r} (its attributes: {', '.join(known)})")


def make_node(
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str,
    op_type: str = OP_TYPE,
    **attributes: Any,
) -> onnx.NodeProto:
    """A node of ``op_type`` (default PredictiveConv; or ``QLINEAR_OP_TYPE``). ``inputs``: PredictiveConv's
    X, W[, B[, Z]], PredictiveQLinearConv's x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
    y_zero_point[, B] ("" for an omitted optional input); ``outputs``: Y[, counters].

    ``attributes`` are the op's (``kernel_shape=[3, 3]``, ``window=3``, ``pattern="checkerboard"``, ...);
    each is checked against the contract. ``pattern``, ``margin`` and ``clip_max`` are written only where
    they differ from their defaults, so that a node with the defaults is the same as before they existed;
    None stands for the default.
    """
    known = _op(op_type).attributes
    values = {}
    for key, value in attributes.items():
        if key not in known:
            raise ValueError(f"{op_type} has no attribute {key!r} (known: {', '.join(known)})")
        if value is not None:
            values[key] = int(value) if key == "audit" else value
    checked = {key: known[key].check(value) for key, value in values.items()}
    for key in ("pattern", "margin", "clip_max"):
        if key in checked and checked[key] == known[key].default:
            del checked[key]
    checked = {key: list(value) if isinstance(value, tuple) else value for key, value in checked.items()}
    node = helper.make_node(op_type, list(inputs), list(outputs), name=name, domain=DOMAIN, **checked)
    node_attributes(node)  # the cross-attribute rules (clip_max only with Clip)
    return node


def check_model(model: onnx.ModelProto, *, names_only: bool = False) -> None:
    """Raise :class:`ContractError` if a node of either op in ``model`` breaks the contract (see
    :func:`node_attributes`); with ``names_only``, only for attributes its op does not take."""
    for node in model.graph.node:
        if is_contract_op(node):
            _check_attribute_names(node) if names_only else node_attributes(node)


# --- The onnx schema, registered on import -------------------------------------------------------


def _type_inference(spec: OpSpec):
    """The shape and type inference of ``spec``'s op: Y [N, M, oH, oW] ([N, oH, oW, M] with channels_last)
    from its X, W and Conv attributes, of the type of its ``Y`` type variable's first input (float32 for
    PredictiveConv, y_zero_point's for PredictiveQLinearConv); counters int64 [7]."""
    names = spec.input_names
    x_index, w_index = 0, names.index("W" if "W" in names else "w")
    y_variable = spec.outputs[0]["type"]
    y_source = min(i for i, entry in enumerate(spec.inputs) if entry["type"] == y_variable)
    y_types = spec.type_constraints[y_variable]

    def infer(ctx) -> None:
        layout = ctx.get_attribute("channels_last") if "channels_last" in spec.attributes else None
        channels_last = layout is not None and layout.i == 1
        x_dims = _dims(ctx.get_input_type(x_index))
        if channels_last and x_dims is not None:
            x_dims = [x_dims[0], x_dims[3], x_dims[1], x_dims[2]]
        w_dims = _dims(ctx.get_input_type(w_index))
        dims: list[Optional[int]] = [None] * 4
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
        source = ctx.get_input_type(y_source)
        elem_type = source.tensor_type.elem_type if source is not None and source.HasField("tensor_type") else 0
        if not elem_type and len(y_types) == 1:
            elem_type = TensorProto.DataType.Value(y_types[0].upper())
        if channels_last:
            dims = [dims[0], dims[2], dims[3], dims[1]]
        if elem_type:
            ctx.set_output_type(0, helper.make_tensor_type_proto(elem_type, dims if x_dims is not None else None))
        if ctx.get_num_outputs() > 1:
            ctx.set_output_type(1, helper.make_tensor_type_proto(TensorProto.INT64, [len(COUNTER_NAMES)]))

    return infer


def _dims(type_proto) -> Optional[list[Optional[int]]]:
    if type_proto is None or not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in type_proto.tensor_type.shape.dim]
    return dims if len(dims) == 4 else None


def _schema(spec: OpSpec) -> onnx.defs.OpSchema:
    schema_type = onnx.defs.OpSchema
    option = schema_type.FormalParameterOption

    def parameters(entries):
        return [
            schema_type.FormalParameter(
                entry["name"],
                entry["type"] if entry["type"] in spec.type_constraints else f"tensor({entry['type']})",
                entry["doc"],
                param_option=option.Optional if entry.get("optional") else option.Single,
            )
            for entry in entries
        ]

    attributes = []
    for attribute in spec.attributes.values():
        if attribute.default is None:
            attributes.append(schema_type.Attribute(attribute.name, schema_type.AttrType(attribute.onnx_type),
                                                    attribute.doc, required=False))
        else:
            default = list(attribute.default) if isinstance(attribute.default, tuple) else attribute.default
            attributes.append(schema_type.Attribute(attribute.name, helper.make_attribute(attribute.name, default),
                                                    attribute.doc))
    schema = schema_type(
        spec.op_type, DOMAIN, spec.version, spec.summary,
        inputs=parameters(spec.inputs),
        outputs=parameters(spec.outputs),
        type_constraints=[(name, [f"tensor({t})" for t in types], f"{' or '.join(types)} tensors")
                          for name, types in spec.type_constraints.items()],
        attributes=attributes,
    )
    schema.set_type_and_shape_inference_function(_type_inference(spec))
    return schema


def register_schema() -> None:
    """Register both ops with onnx (once per process; importing onnxpred does it)."""
    for spec in OPS.values():
        try:
            onnx.defs.get_schema(spec.op_type, spec.version, DOMAIN)
        except onnx.defs.SchemaError:
            onnx.defs.register_schema(_schema(spec))


register_schema()
