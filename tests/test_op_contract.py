"""The op's contract (onnxpred/op_contract.json): one table that the node builder, the onnx schema, the
reference and the tools' checks all read."""

from __future__ import annotations

import inspect
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from op_models import single_node_model

import onnxpred
from onnxpred import op, reference
from onnxpred.cli import main
from onnxpred.errors import EXIT_UNSUPPORTED, EXIT_VALIDATION

W = np.ones((4, 2, 3, 3), np.float32)


def misspelt(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.node[0].attribute.append(helper.make_attribute("windw", 5))
    return model


def test_the_reference_defaults_are_the_contracts():
    signature = inspect.signature(reference.predictive_conv).parameters
    for name, value in op.defaults().items():
        if name != "audit":
            assert signature[name].default == value, name
    assert set(op.PATTERNS) == {"diagonal", "anti_diagonal", "both_diagonals", "checkerboard", "corners", "centre"}
    for pattern in op.PATTERNS:
        reference.sampling_pattern(pattern, 3)  # every pattern of the contract is defined


def test_the_builder_writes_new_attributes_only_where_they_differ_from_their_defaults():
    plain = op.make_node(["X", "W"], ["Y"], name="n", kernel_shape=[3, 3], window=3)
    assert [a.name for a in plain.attribute] == ["kernel_shape", "window"]
    node = op.make_node(["X", "W"], ["Y"], name="n", kernel_shape=[3, 3], pattern="corners", margin=0.5)
    assert op.node_attributes(node)["pattern"] == "corners" and op.node_attributes(node)["margin"] == 0.5
    with pytest.raises(ValueError, match="PredictiveConv has no attribute 'windw'"):
        op.make_node(["X", "W"], ["Y"], name="n", kernel_shape=[3, 3], windw=5)
    with pytest.raises(ValueError, match="attribute 'window' must be an integer from 1 to 4096, got 0"):
        op.make_node(["X", "W"], ["Y"], name="n", kernel_shape=[3, 3], window=0)


def check_node(node: onnx.NodeProto) -> None:
    context = onnx.checker.C.CheckerContext()
    context.ir_version = onnx.IR_VERSION
    context.opset_imports = {"": 17, op.DOMAIN: op.OPSET_VERSION}
    onnx.checker.check_node(node, context)


def test_onnx_checker_knows_the_op_and_rejects_unknown_attributes():
    node = single_node_model(W, pattern="checkerboard", margin=1.0).graph.node[0]
    check_node(node)
    with pytest.raises(onnx.checker.ValidationError, match="Unrecognized attribute: windw"):
        check_node(misspelt(single_node_model(W)).graph.node[0])
    node.attribute.append(helper.make_attribute("audit", 1.5))
    with pytest.raises(onnx.checker.ValidationError, match="audit"):
        check_node(node)


def test_shape_inference_types_both_outputs():
    model = single_node_model(W, pads=[1, 1, 1, 1], strides=[2, 1])
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 2, 9, 11]))
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("counters", TensorProto.INT64, None)])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: [d.dim_value or d.dim_param or None for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.output}
    assert shapes["Y"][1:] == [4, 5, 11] and shapes["counters"] == [len(op.COUNTER_NAMES)]


def test_the_session_helper_refuses_unknown_attributes(tmp_path):
    with pytest.raises(op.ContractError, match="node 'pconv' has an attribute the op does not know: 'windw'"):
        onnxpred.session(misspelt(single_node_model(W)))
    path = tmp_path / "misspelt.onnx"
    onnx.save(misspelt(single_node_model(W)), path)
    with pytest.raises(op.ContractError):
        onnxpred.session(path)
    with pytest.raises(op.ContractError):
        onnxpred.session(path.read_bytes())


def test_the_rewriter_and_validate_refuse_models_breaking_the_contract(tmp_path, capsys):
    model = single_node_model(W)
    model.graph.node[0].attribute.append(helper.make_attribute("pattern", "spiral"))
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    assert main(["rewrite", str(path)]) == EXIT_UNSUPPORTED
    assert "attribute 'pattern' must be one of" in capsys.readouterr().err
    conv = helper.make_graph(
        [helper.make_node("Conv", ["X", "W"], ["C"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["C"], ["Y"])], "conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [onnx.numpy_helper.from_array(W, "W")])
    original = helper.make_model(conv, opset_imports=[helper.make_opsetid("", 17)])
    original.ir_version = 8
    onnx.save(original, path)
    unknown = tmp_path / "unknown.onnx"
    onnx.save(misspelt(onnxpred.rewrite(original)), unknown)
    assert main(["validate", str(path), str(unknown)]) == EXIT_VALIDATION
    assert "Unrecognized attribute: windw" in capsys.readouterr().err
    out_of_range = onnxpred.rewrite(original)
    next(a for a in out_of_range.graph.node[0].attribute if a.name == "window").i = 0
    onnx.save(out_of_range, unknown)
    assert main(["validate", str(path), str(unknown)]) == EXIT_VALIDATION
    assert "breaks the op's contract: PredictiveConv node 'conv': attribute 'window' must be" in capsys.readouterr().err


def test_the_contract_file_is_the_one_the_package_reads():
    from importlib import resources

    table = json.loads(resources.files("onnxpred").joinpath("op_contract.json").read_text())
    assert [a["name"] for a in table["attributes"]] == list(op.ATTRIBUTES)
    assert tuple(table["counters"]) == op.COUNTER_NAMES


# --- PredictiveQLinearConv: the same table, its own inputs and a subset of the attributes ----------------

QLINEAR_INPUTS = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point"]


def qlinear_node(**attributes) -> onnx.NodeProto:
    return op.make_node(QLINEAR_INPUTS, ["Y", "counters"], name="q", op_type=op.QLINEAR_OP_TYPE,
                        kernel_shape=[3, 3], **attributes)


def test_each_attribute_is_defined_once_and_the_int8_op_takes_the_shared_ones():
    from importlib import resources

    table = json.loads(resources.files("onnxpred").joinpath("op_contract.json").read_text())
    names = [a["name"] for a in table["attributes"]]
    assert len(names) == len(set(names))
    assert set(op.PREDICTIVE_QLINEAR_CONV.attributes) == set(op.ATTRIBUTES) - {"activation", "clip_max"}
    assert op.QLINEAR_INPUT_NAMES == tuple(QLINEAR_INPUTS + ["B"])
    assert "activation" not in op.defaults(op.QLINEAR_OP_TYPE)
    assert op.defaults(op.QLINEAR_OP_TYPE)["window"] == op.defaults()["window"]


def test_the_int8_node_builder_checker_and_predicates():
    node = qlinear_node(window=2, margin=0.25)
    assert op.is_predictive_qlinear_conv(node) and op.is_contract_op(node) and not op.is_predictive_conv(node)
    assert op.node_attributes(node)["margin"] == 0.25
    check_node(node)
    with pytest.raises(ValueError, match="PredictiveQLinearConv has no attribute 'activation'"):
        qlinear_node(activation="Relu")
    node.attribute.append(helper.make_attribute("clip_max", 6.0))
    with pytest.raises(onnx.checker.ValidationError, match="Unrecognized attribute: clip_max"):
        check_node(node)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    with pytest.raises(op.ContractError, match="PredictiveQLinearConv node 'q' has an attribute the op does not know"):
        op.check_model(model, names_only=True)


@pytest.mark.parametrize("y_type", [TensorProto.UINT8, TensorProto.INT8])
def test_shape_inference_types_the_int8_output_as_y_zero_point(y_type):
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 2, 9, 11]),
              helper.make_tensor_value_info("y_zero_point", y_type, [])]
    scalars = [onnx.numpy_helper.from_array(np.array(0.1, np.float32), name) for name in ("x_scale", "w_scale", "y_scale")]
    scalars += [onnx.numpy_helper.from_array(np.array(3, np.uint8), "x_zero_point"),
                onnx.numpy_helper.from_array(np.ones((4, 2, 3, 3), np.int8), "w"),
                onnx.numpy_helper.from_array(np.array(0, np.int8), "w_zero_point")]
    node = qlinear_node(pads=[1, 1, 1, 1], strides=[2, 1])
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.UNDEFINED, None),
                                                    helper.make_tensor_value_info("counters", TensorProto.INT64, None)],
                              scalars)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    y = next(v for v in inferred.graph.output if v.name == "Y")
    assert y.type.tensor_type.elem_type == y_type
    assert [d.dim_value for d in y.type.tensor_type.shape.dim][1:] == [4, 5, 11]
