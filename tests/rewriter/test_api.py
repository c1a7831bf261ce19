"""The public API: layer selection, windows, counters, names, model files and external data."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from rewriter_graphs import GraphBuilder, attributes, check_rewrite, predictive_nodes, random_feeds, run

import onnxpred
from onnxpred.errors import InputError, OutputError, UserError
from onnxpred import model_io
from onnxpred.model_io import check_output_path, load_model, model_files, save_model, staged_output


def three_layers() -> onnx.ModelProto:
    """conv_a → Relu → conv_b → Relu → conv_c → Relu, 8 channels on 12x12."""
    b = GraphBuilder()
    t = b.input("X", [1, 8, 12, 12])
    for name in ("conv_a", "conv_b", "conv_c"):
        t = b.node("Relu", [b.conv(t, (8, 8, 3, 3), name=name)], [f"{name}_relu"])
    b.output(t)
    model = b.model()
    model.metadata_props.add(key="onnxpred.preprocessing", value="{}")
    model.doc_string = "three layers"
    return model


def windows_of(model) -> dict[str, int]:
    return {n.name: attributes(n)["window"] for n in predictive_nodes(model)}


def test_layers_exclude_and_window_map():
    model = three_layers()
    _, summary = check_rewrite(model, rewritten=2, left=1, layers=["conv_a", "conv_c"], window=2)
    assert {l.name: l.reason for l in summary.left_alone} == {"conv_b": "not among the selected layers"}
    result, summary = check_rewrite(model, rewritten=2, left=1, exclude=["conv_b"], window_map={"conv_c": 5})
    assert windows_of(result) == {"conv_a": 3, "conv_c": 5}
    assert summary.left_alone[0].reason == "excluded"


def predictors_of(model) -> dict[str, tuple]:
    """(window, pattern, margin) per layer; margins are float32 in the node, so rounded to 6 digits."""
    return {n.name: (a["window"], a["pattern"], round(a["margin"], 6))
            for n in predictive_nodes(model) for a in [onnxpred.op.node_attributes(n)]}


def test_pattern_margin_and_per_layer_settings():
    window_map = {"conv_b": {"window": 2, "pattern": "checkerboard", "margin": 0.35}, "conv_c": 4}
    result, summary = check_rewrite(three_layers(), rewritten=3, left=0, pattern="anti_diagonal", margin=0.25,
                                    window_map=window_map)
    assert predictors_of(result) == {"conv_a": (3, "anti_diagonal", 0.25), "conv_b": (2, "checkerboard", 0.35),
                                     "conv_c": (4, "anti_diagonal", 0.25)}
    assert [(r.window, r.predictor.pattern, r.margin) for r in summary.rewritten] == [
        (3, "anti_diagonal", 0.25), (2, "checkerboard", 0.35), (4, "anti_diagonal", 0.25)]
    # The defaults are not written: a rewrite without the knobs has the nodes it had before them.
    plain = onnxpred.rewrite(three_layers())
    assert all({a.name for a in n.attribute}.isdisjoint({"pattern", "margin"}) for n in predictive_nodes(plain))


def test_margins_in_standard_deviations_need_scales():
    with pytest.raises(UserError, match=r"margin 0.5sd of layer 'conv_a' is relative .* \(give --data\)"):
        onnxpred.rewrite(three_layers(), margin="0.5sd")
    scales = {"conv_a": 2.0, "conv_b": 4.0, "conv_c": 1.0}
    result, summary = onnxpred.rewrite_with_summary(three_layers(), margin="0.5sd", scales=scales,
                                                     window_map={"conv_c": {"margin": 0.1}})
    assert predictors_of(result) == {"conv_a": (3, "diagonal", 1.0), "conv_b": (3, "diagonal", 2.0),
                                     "conv_c": (3, "diagonal", 0.1)}
    assert "0.5sd = 2" in summary.format_table()


def test_set_windows_changes_only_what_it_is_given():
    rewritten = onnxpred.rewrite(three_layers(), window_map={"conv_a": {"window": 2, "pattern": "corners"}})
    changed = onnxpred.set_windows(rewritten, {"conv_a": {"margin": 1.5}, "conv_b": 5})
    assert predictors_of(changed) == {"conv_a": (2, "corners", 1.5), "conv_b": (5, "diagonal", 0.0),
                                      "conv_c": (3, "diagonal", 0.0)}
    assert predictors_of(onnxpred.set_windows(changed, 1)) == {
        "conv_a": (1, "corners", 1.5), "conv_b": (1, "diagonal", 0.0), "conv_c": (1, "diagonal", 0.0)}


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(layers=["nope"]), "layers: no layer named 'nope'"),
        (dict(exclude=["conv_a", "x"]), "exclude: no layer named 'x'"),
        (dict(layers=["conv_a"], exclude=["conv_b"]), "give layers or exclude, not both"),
        (dict(window=0), "window must be an integer from 1 to 4096, got 0"),
        (dict(window=True), "window must be an integer"),
        (dict(window_map={"conv_a": 2.5}), "window of layer 'conv_a' must be an integer"),
        (dict(window_map={"conv_z": 2}), "window map: no layer named 'conv_z'"),
        (dict(pattern="spiral"), "pattern must be one of diagonal, anti_diagonal"),
        (dict(margin=-1), "margin must be >= 0, got -1"),
        (dict(margin="0.5 sigma"), "margin must be a number >= 0 or a multiple"),
        (dict(window_map={"conv_a": {"window": 2, "patern": "corners"}}), "layer 'conv_a': unknown setting 'patern'"),
        (dict(window_map={"conv_a": {"margin": float("nan")}}), "margin of layer 'conv_a' must be a finite number"),
    ],
)
def test_bad_choices_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        onnxpred.rewrite(three_layers(), **options)


def test_counters_exposed_and_audit():
    result, _ = check_rewrite(three_layers(), rewritten=3, expose_counters=True, audit=True)
    counter_outputs = [o for o in result.graph.output if o.name.endswith(".counters")]
    assert [o.name for o in counter_outputs] == ["conv_a.counters", "conv_b.counters", "conv_c.counters"]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.INT64 for o in counter_outputs)
    assert all(attributes(n)["audit"] == 1 for n in predictive_nodes(result))
    counters = run(result, random_feeds(result), ["conv_b.counters"])[0]
    assert counters[0] == 8 * 12 * 12 and counters[3] >= 0  # outputs; pred_hit counted under audit


def test_set_windows():
    result = onnxpred.rewrite(three_layers(), window=3)
    assert windows_of(onnxpred.set_windows(result, 1)) == {"conv_a": 1, "conv_b": 1, "conv_c": 1}
    assert windows_of(onnxpred.set_windows(result, {"conv_b": 7})) == {"conv_a": 3, "conv_b": 7, "conv_c": 3}
    assert windows_of(result) == {"conv_a": 3, "conv_b": 3, "conv_c": 3}  # a copy
    with pytest.raises(UserError, match="no layer named 'conv_x'"):
        onnxpred.set_windows(result, {"conv_x": 2})


def test_model_level_fields_kept_and_input_unchanged():
    model = three_layers()
    before = model.SerializeToString()
    result = onnxpred.rewrite(model)
    assert model.SerializeToString() == before
    assert result.doc_string == "three layers"
    assert [(p.key, p.value) for p in result.metadata_props] == [("onnxpred.preprocessing", "{}")]
    assert result.ir_version == model.ir_version


def test_unnamed_and_duplicate_layers_get_unique_names():
    model = three_layers()
    model.graph.node[0].name = ""
    model.graph.node[4].name = "conv_b"  # onnxruntime refuses such a model; the rewritten one runs
    result, summary = onnxpred.rewrite_with_summary(model)
    run(result, random_feeds(result))
    assert [l.name for l in summary.rewritten] == ["conv_a_out", "conv_b", "conv_b_2"]
    assert [n.name for n in predictive_nodes(result)] == ["conv_a_out", "conv_b", "conv_b_2"]
    assert summary.prepasses["layers named"] == ["unnamed Conv named 'conv_a_out'", "Conv 'conv_b' named 'conv_b_2'"]


def test_summary_totals_and_table():
    _, summary = onnxpred.rewrite_with_summary(three_layers(), exclude=["conv_c"])
    per_layer = 8 * 12 * 12 * 8 * 9
    assert (summary.rewritten_macs, summary.conv_macs) == (2 * per_layer, 3 * per_layer)
    table = summary.format_table()
    assert "conv_a  Conv->Relu  1x8x12x12  1x8x12x12" in table
    assert "2 layers rewritten, 1 left alone; MACs/image in rewritten layers: 166K of 249K" in table
    assert "(66.7%)" in table


def test_reads_a_path_with_external_data_and_writes_it_back(tmp_path):
    model = three_layers()
    source = tmp_path / "in.onnx"
    onnx.save_model(three_layers(), source, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert model_files(source) == (source, tmp_path / "weights.bin")
    result = onnxpred.rewrite(source)
    out = save_model(result, tmp_path / "out.onnx", external_data=True, protected=model_files(source))
    assert (tmp_path / "out.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx", "out.onnx.data", "weights.bin"]
    feeds = random_feeds(model)
    np.testing.assert_allclose(run(onnxpred.set_windows(out, 1), feeds)[0], run(model, feeds)[0], rtol=1e-4, atol=1e-4)
    assert load_model(out).graph.initializer[0].raw_data  # loaded back into memory


def test_large_models_are_saved_with_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "LARGE_MODEL_BYTES", 1000)  # three_layers holds ~7 KB of weights
    result = onnxpred.rewrite(three_layers())
    save_model(result, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").stat().st_size >= 3 * 8 * 8 * 9 * 4  # the weights; biases stay inline
    assert (tmp_path / "big.onnx").stat().st_size < 2000
    umask = os.umask(0)
    os.umask(umask)
    assert all((tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask for name in ("big.onnx", "big.onnx.data"))
    assert len(result.graph.initializer[0].raw_data) > 0  # the model saved is left as it was


def test_output_must_not_be_the_input(tmp_path, monkeypatch):
    source = tmp_path / "model.onnx"
    onnx.save_model(three_layers(), source)
    protected = model_files(source)
    (tmp_path / "link.onnx").symlink_to(source)
    os.link(source, tmp_path / "hard.onnx")
    monkeypatch.chdir(tmp_path)
    for output in (source, tmp_path / "sub" / ".." / "model.onnx", tmp_path / "link.onnx", tmp_path / "hard.onnx"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError, match="refusing to overwrite the input"):
            check_output_path(output, protected)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        check_output_path(type(source)("model.onnx"), protected)
    # the data file of "model" would be the input's data file
    onnx.save_model(three_layers(), tmp_path / "ext.onnx", save_as_external_data=True, location="model.data")
    with pytest.raises(OutputError):
        check_output_path(tmp_path / "model", model_files(tmp_path / "ext.onnx"))


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"old")
    with pytest.raises(RuntimeError), staged_output(output) as staged:
        staged.write_bytes(b"partial")
        (staged.parent / "out.onnx.data").write_bytes(b"partial")
        raise RuntimeError("validation failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"] and output.read_bytes() == b"old"
    with pytest.raises(OutputError, match="does not exist"):
        save_model(three_layers(), tmp_path / "missing" / "out.onnx")


def test_unreadable_inputs_are_input_errors(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 not a model")
    with pytest.raises(InputError, match="is not an ONNX model"):
        onnxpred.rewrite(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="No such file"):
        onnxpred.rewrite(tmp_path / "missing.onnx")
