"""onnxpred tune on a small network: the split, the budget, best effort, the window map, never slower, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxpred
from onnxpred import op
from onnxpred.cli import main
from onnxpred.datasets import LabelledImage, PreprocessingSpec, batches, load_dataset
from onnxpred.errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE, EXIT_VALIDATION
from onnxpred.quantization import quantize
from onnxpred.rewriter.passes.order_channels import UNOBSERVABLE_ACTIVITY
from onnxpred.tuning.api import tune, write_outputs
from onnxpred.tuning.report import to_markdown
from onnxpred.tuning.timing import EndToEnd, LayerTime, Timer
from onnxpred.tuning.split import split_images

# A small search space keeps each run to a second or two.
QUICK = dict(windows=(2, 3), patterns=["diagonal", "centre"], margins=["0", "0.5sd"], sensitivity_images=8,
             candidates_per_layer=3, threads=[1], progress=False)
QUICK_CLI = ["--windows", "2,3", "--patterns", "diagonal,centre", "--margins", "0,0.5sd", "--threads", "1", "-q"]


def test_split_is_disjoint_deterministic_and_recorded():
    images = [LabelledImage(Path(f"/data/class{i % 3}/img{i}.png"), i % 3) for i in range(50)]
    split = split_images(images, 0.4, seed=3)
    tuning, confirmation = {i.path for i in split.tuning}, {i.path for i in split.confirmation}
    assert not tuning & confirmation
    assert tuning | confirmation == {i.path for i in images}
    assert len(confirmation) == 20
    shuffled = images[:]
    random.Random(1).shuffle(shuffled)
    again = split_images(shuffled, 0.4, seed=3)
    assert {i.path for i in again.confirmation} == confirmation  # the order of listing does not matter
    assert {i.path for i in split_images(images, 0.4, seed=4).confirmation} != confirmation
    record = split.record()
    assert record["seed"] == 3 and sorted(record["confirmation"]) == sorted(map(str, confirmation))
    assert sorted(record["tuning"]) == sorted(map(str, tuning))


def test_split_needs_two_images():
    with pytest.raises(Exception, match="at least 2 images"):
        split_images([LabelledImage(Path("a.png"), 1)])


@pytest.mark.parametrize("objective", ["macs", "executed"])
def test_result_records_the_split_and_confirms_on_unseen_images(small_net, small_data, objective):
    result = tune(small_net, small_data, objective=objective, max_drop=5.0, **QUICK)
    content = result.content
    split = content["split"]
    assert not set(split["tuning"]) & set(split["confirmation"])
    assert len(split["tuning"]) + len(split["confirmation"]) == len(load_dataset(small_data))
    if result.model is not None:
        confirmation = content["confirmation"]
        assert confirmation["tuned"]["images"] == len(split["confirmation"])
        low, high = confirmation["tuned"]["agreement"]["ci95"]
        assert low <= confirmation["tuned"]["agreement"]["value"] <= high
    for configuration in content["tuning"]["configurations"]:
        assert configuration["images"] == len(split["tuning"])  # the search ran on the tuning images only


def test_budget_zero_chooses_nothing_that_changes_a_tuning_image(small_net, unlabelled_data):
    result = tune(small_net, unlabelled_data, metric="agreement", objective="macs", max_drop=0.0, **QUICK)
    chosen = [c for c in result.content["tuning"]["configurations"] if c["chosen"]]
    if result.model is None:
        assert result.outcome == "nothing-within-budget" and not chosen
    else:
        (configuration,) = chosen
        assert configuration["agreement"] == 1.0 and configuration["drop_points"] <= 0
    assert all(c["feasible"] == (c["agreement"] == 1.0) for c in result.content["tuning"]["configurations"])


def test_the_float_model_a_quantized_one_came_from_is_a_second_reference(small_net, small_data, tmp_path):
    """Given the model it was quantized from, tune also states the top-1 drop against that model; here a float
    model whose classifier is negated, so that its top-1 differs from the tuned model's original."""
    flipped = onnx.load(small_net)
    final = flipped.graph.node[-1]
    negated = onnx.helper.make_node("Neg", [final.output[0]], [final.output[0] + "_neg"])
    flipped.graph.node.append(negated)
    flipped.graph.output[0].name = negated.output[0]
    onnx.save(flipped, tmp_path / "float.onnx")
    result = tune(small_net, small_data, objective="macs", max_drop=100.0, fp32_model=tmp_path / "float.onnx", **QUICK)
    assert not result.content["channels_ordered"]  # float layers keep their order unless asked
    confirmation = result.content["confirmation"]
    float_top1, original_top1 = confirmation["fp32"]["top1"], confirmation["original"]["top1"]
    assert float_top1["trials"] == original_top1["trials"] and float_top1["hits"] != original_top1["hits"]
    tuned_top1 = confirmation["tuned"]["top1"]["value"]
    assert confirmation["top1_drop_vs_fp32_points"] == pytest.approx(100 * (float_top1["value"] - tuned_top1))
    assert "float model (before quantization)" in to_markdown(result.content)


def test_a_quantized_model_is_tuned_against_itself_and_its_float_model(small_net, small_data, tmp_path):
    """The int8 model from onnxpred quantize is the baseline; its eligible convs become PredictiveQLinearConv."""
    int8 = tmp_path / "small.int8.onnx"
    onnx.save(quantize(small_net, small_data, calibration_images=4), int8)
    result = tune(int8, small_data, objective="macs", max_drop=100.0, fp32_model=small_net, **QUICK)
    assert result.model is not None
    kinds = {node.op_type for node in result.model.graph.node if node.name in result.window_map}
    assert kinds == {"PredictiveQLinearConv"}
    assert result.content["channels_ordered"]  # int8 layers by default: exact sums in any order
    confirmation = result.content["confirmation"]
    assert confirmation["fp32"]["top1"]["trials"] == confirmation["tuned"]["top1"]["trials"]
    assert confirmation["top1_drop_vs_fp32_points"] is not None


def test_layers_whose_activity_cannot_be_observed_keep_their_order(small_net, small_data):
    """onnxruntime's QOperator form fuses each activation into its QLinearConv: nothing to order the channels by."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            spec = PreprocessingSpec.from_model(onnx.load(small_net))
            self.feeds = iter([{"input": pixels} for pixels, _ in batches(load_dataset(small_data)[:4], spec, 4)])

        def get_next(self):
            return next(self.feeds, None)

    qoperator = small_net.with_name("small.qoperator.onnx")
    quantize_static(small_net, qoperator, Reader(), quant_format=QuantFormat.QOperator)
    result = tune(qoperator, small_data, objective="macs", max_drop=100.0, **{**QUICK, "margins": ["0"]})
    assert not result.content["channels_ordered"]
    assert UNOBSERVABLE_ACTIVITY in result.messages


def test_a_time_budget_too_short_says_so(small_net, small_data):
    result = tune(small_net, small_data, objective="macs", time_budget_s=1e-6, **QUICK)
    assert result.model is None and result.outcome == "out-of-time"
    assert any("time budget" in message for message in result.messages)


def test_top1_without_labels_is_refused(small_net, unlabelled_data):
    with pytest.raises(Exception, match="needs labelled images"):
        tune(small_net, unlabelled_data, metric="top1", objective="macs", **QUICK)


def test_an_unreachable_goal_writes_the_best_effort_and_says_so(small_net, small_data, tmp_path, capsys):
    result = tune(small_net, small_data, objective="macs", max_drop=100.0, min_savings=0.99, **QUICK)
    assert result.model is not None and not result.goal_met
    assert any("goal not met" in message for message in result.messages)
    written = write_outputs(result, small_net, tmp_path / "best.onnx")
    assert written.model.is_file() and written.window_map.is_file()
    assert "GOAL NOT MET" in (written.report / "report.md").read_text()
    assert json.loads((written.report / "report.json").read_text())["goal_met"] is False


def test_without_strict_the_best_effort_is_written_and_marked(small_net, small_data, tmp_path, capsys):
    output = tmp_path / "effort.onnx"
    code = main(["tune", str(small_net), "--data", str(small_data), "--objective", "macs", "--max-drop", "100",
                 "--min-savings", "0.99", "-o", str(output), *QUICK_CLI])
    assert code == 0 and output.is_file()
    out = capsys.readouterr().out
    assert "goal not met" in out and "the best effort" in out


def test_strict_exits_non_zero_and_writes_no_model(small_net, small_data, tmp_path, capsys):
    output = tmp_path / "strict.onnx"
    code = main(["tune", str(small_net), "--data", str(small_data), "--objective", "macs", "--max-drop", "100",
                 "--min-savings", "0.99", "--strict", "-o", str(output), *QUICK_CLI])
    assert code == EXIT_VALIDATION
    assert not output.exists()
    assert "goal not met" in capsys.readouterr().err


def test_window_map_rewrites_to_the_same_model(small_net, small_data, tmp_path, capsys):
    output = tmp_path / "tuned.onnx"
    code = main(["tune", str(small_net), "--data", str(small_data), "--objective", "macs", "--max-drop", "20",
                 "-o", str(output), *QUICK_CLI])
    assert code == 0
    window_map = json.loads((tmp_path / "tuned.windows.json").read_text())
    assert window_map, "a 20-point budget leaves room for some prediction on this network"
    again = tmp_path / "again.onnx"
    assert main(["rewrite", str(small_net), "--window-map", str(tmp_path / "tuned.windows.json"),
                 "--layers", ",".join(window_map), "--no-validate", "-o", str(again)]) == 0
    assert onnx.load(again).SerializeToString() == onnx.load(output).SerializeToString()
    report = json.loads((tmp_path / "tuned.tune" / "report.json").read_text())
    assert report["window_map"] == window_map
    assert "<svg" in (tmp_path / "tuned.tune" / "report.html").read_text()


class _Timer(Timer):
    """Layers that pay alone (or not), kernels at window 1 slower or faster than onnxruntime's, and a whole
    model that is faster only when said."""

    def __init__(self, layer_pays: bool, kernel_faster: bool = False, model_faster: bool = False):
        super().__init__([])
        self.layer_pays, self.kernel_faster, self.model_faster = layer_pays, kernel_faster, model_faster

    def layer(self, original, rewritten, layer, threads, skipped_macs):
        return LayerTime(100.0, 40.0, 10.0) if self.layer_pays else LayerTime(100.0, 150.0, 30.0)

    def kernel(self, original, rewritten, layer, threads, fresh_original=False):
        return LayerTime(100.0, 60.0, 0.0) if self.kernel_faster else LayerTime(100.0, 110.0, 0.0)

    def end_to_end(self, original, tuned, threads):
        return EndToEnd(threads, 1.0, 0.9 if self.model_faster else 1.5)


@pytest.mark.parametrize("layer_pays", [True, False])
def test_nothing_that_pays_writes_nothing_or_the_original(small_net, small_data, tmp_path, layer_pays):
    result = tune(small_net, small_data, objective="latency", max_drop=100.0, timer=_Timer(layer_pays), **QUICK)
    assert result.model is None and result.outcome == "nothing-pays" and result.window_map == {}
    assert result.content["advice"]  # what would have to change
    assert any("nothing pays" in message for message in result.messages)
    if layer_pays:
        assert "did not make the whole model faster" in result.content["advice"][0]
        assert result.content["tuning"]["configurations"]  # a configuration was chosen, then timed, then dropped
    else:
        assert any("kernel would have to run 1.80× faster" in line for line in result.content["advice"])
    nothing = write_outputs(result, small_net, tmp_path / "none.onnx")
    assert nothing.model is None and not (tmp_path / "none.onnx").exists()
    unchanged = write_outputs(result, small_net, tmp_path / "same.onnx", write_unchanged=True)
    assert onnx.load(unchanged.model).SerializeToString() == onnx.load(small_net).SerializeToString()
    assert not (tmp_path / "same.windows.json").exists()


def test_ordered_channels_are_timed_written_and_change_no_output(small_net, small_data, tmp_path):
    timer = _Timer(layer_pays=True, model_faster=True)
    result = tune(small_net, small_data, objective="latency", max_drop=100.0, timer=timer, order_channels=True,
                  **QUICK)
    assert result.model is not None and result.content["channels_ordered"]
    assert any(message.startswith("channels ordered by their activity on ") for message in result.messages)
    plain = onnxpred.rewrite(small_net, layers=list(result.window_map), window_map=result.window_map,
                             channels_last=True)
    weights = [{t.name: numpy_helper.to_array(t) for t in m.graph.initializer}["w1"] for m in (plain, result.model)]
    assert not np.array_equal(*weights) and np.array_equal(np.sort(weights[0], axis=0), np.sort(weights[1], axis=0))
    size = onnx.load(small_net).graph.input[0].type.tensor_type.shape.dim[2].dim_value
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    np.testing.assert_allclose(*(onnxpred.session(m).run(None, {"input": x})[0] for m in (plain, result.model)),
                               rtol=1e-5, atol=1e-5)
    written = write_outputs(result, small_net, tmp_path / "tuned.onnx", data=small_data)
    assert written.rewrite_command.endswith(f" --order-channels --data {small_data}")


def test_a_faster_kernel_is_kept_at_window_1_when_nothing_else_fits(small_net, small_data):
    """A 0-point budget leaves no prediction; layers whose own kernel runs at 0.6x onnxruntime's time are
    kept at window 1 (the same outputs), and the model is written."""
    timer = _Timer(layer_pays=False, kernel_faster=True, model_faster=True)
    result = tune(small_net, small_data, objective="latency", max_drop=0.0, timer=timer, **QUICK)
    assert result.outcome == "tuned" and result.model is not None and result.window_map
    assert set(result.window_map.values()) == {1}
    windows = {node.name: op.node_attributes(node)["window"] for node in result.model.graph.node
               if op.is_contract_op(node)}
    assert windows == result.window_map
    assert any("kept at window 1 for its kernel alone, 0.60x" in message for message in result.messages)
    assert "| k=1 |" in to_markdown(result.content)  # the report's layer table says so
    slower = tune(small_net, small_data, objective="latency", max_drop=0.0,
                  timer=_Timer(layer_pays=False, kernel_faster=True, model_faster=False), **QUICK)
    assert slower.model is None and slower.window_map == {}  # never slower end to end: dropped again


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as error:  # argparse's own errors
        return error.code


@pytest.mark.parametrize("arguments, code, message", [
    (["--metric", "top5"], EXIT_USAGE, "invalid choice"),
    (["--max-drop", "x"], EXIT_USAGE, "number of points"),
    (["--time-budget", "soon"], EXIT_USAGE, "duration"),
    (["--patterns", "spiral"], EXIT_USAGE, "unknown pattern"),
    (["--windows", "0"], EXIT_USAGE, "window sizes"),
    (["--margins", "lots"], EXIT_USAGE, "margin"),
    (["--data", "/nonexistent/folder"], EXIT_INPUT, "does not exist"),
    (["--fp32", "/nonexistent/model.onnx"], EXIT_INPUT, "model.onnx"),
])
def test_bad_input_is_one_line_and_an_exit_code(small_net, small_data, tmp_path, capsys, arguments, code, message):
    argv = ["tune", str(small_net), "--data", str(small_data), "-o", str(tmp_path / "out.onnx"), *arguments]
    assert _exit_code(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err


def test_output_over_the_input_is_refused(small_net, small_data, capsys):
    assert main(["tune", str(small_net), "--data", str(small_data), "-o", str(small_net), *QUICK_CLI]) == EXIT_OUTPUT
    assert "refusing to overwrite" in capsys.readouterr().err
