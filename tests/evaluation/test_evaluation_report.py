"""``report`` on the tiny network: every number against the NumPy reference run by hand, and the files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from onnxpred import op
from onnxpred.cli import main
from onnxpred.evaluation import count_zero_windows, report
from onnxpred.evaluation.render import to_html

WINDOWS = (1, 2, 3)
LAYER_NAMES = ["conv1", "conv2"]


@pytest.fixture(scope="module")
def tiny_report(tiny_net, tiny_data, tmp_path_factory):
    folder, _ = tiny_data
    out = tmp_path_factory.mktemp("report")
    content = report(tiny_net.path, folder, WINDOWS, out_dir=out, batch_size=3, progress=False)
    return content, out


def _result(content, window):
    return next(result for result in content["results"] if result["window"] == window)


def test_json_keys(tiny_report):
    content, out = tiny_report
    assert json.loads((out / "report.json").read_text()) == content
    assert {"model", "data", "images", "results", "spatial_correlation", "original"} <= set(content)
    assert content["images"] == 4
    for result in content["results"]:
        assert {"window", "top1", "top5", "agreement", "mac_savings", "mac_savings_denominator",
                "mac_savings_all_conv", "top1_ci95", "run_time_s", "layers"} <= set(result)
        for layer in result["layers"]:
            assert set(layer["counters"]) == set(op.COUNTER_NAMES)
    assert [result["window"] for result in content["results"]] == list(WINDOWS)


def test_window_one_saves_nothing_and_matches_the_original(tiny_report):
    content, _ = tiny_report
    result = _result(content, 1)
    assert result["mac_savings"] == 0 and result["mac_savings_all_conv"] == 0
    assert result["agreement"] == 1
    # The labels are the original top-1 except for the last image, also outside its top 5.
    assert result["top1"] == content["original"]["top1"] == 3 / 4
    assert result["top5"] == content["original"]["top5"] == 3 / 4
    assert result["outcomes"]["pred_hit"] == result["outcomes"]["pred_miss"] == 0


@pytest.mark.parametrize("window", WINDOWS)
def test_counters_and_accuracy_equal_the_reference(tiny_report, tiny_net, tiny_pixels, tiny_data, window):
    content, _ = tiny_report
    _, labels = tiny_data
    result = _result(content, window)
    expected = tiny_net.activations(tiny_pixels, window)
    assert [layer["name"] for layer in result["layers"]] == LAYER_NAMES
    for layer, (_, counters) in zip(result["layers"], expected):
        named = dict(zip(op.COUNTER_NAMES, counters.tolist()))
        for name in ("outputs", "zero_diag", "predicted", "pred_hit", "pred_miss", "macs_dense"):
            assert layer["counters"][name] == named[name], name
        # The kernel may compute some predicted outputs anyway, never fewer than the rest.
        assert layer["counters"]["macs_executed"] >= named["macs_executed"]
        assert layer["mac_savings_ideal"] == 1 - named["macs_executed"] / named["macs_dense"]
    # Hand-computable: 4 images x 4 channels x 8 x 8 outputs, 3x3 kernels over 3 and 4 input channels.
    assert [layer["counters"]["outputs"] for layer in result["layers"]] == [1024, 1024]
    assert [layer["counters"]["macs_dense"] for layer in result["layers"]] == [1024 * 27, 1024 * 36]
    top1 = tiny_net.logits(tiny_pixels, window).argmax(axis=1)
    assert result["top1"] == np.mean(top1 == labels)
    assert result["agreement"] == np.mean(top1 == tiny_net.logits(tiny_pixels).argmax(axis=1))


@pytest.mark.parametrize("window", WINDOWS)
def test_counters_add_up(tiny_report, window):
    result = _result(tiny_report[0], window)
    for entry in [result, *result["layers"]]:
        counters = entry["counters"]
        assert counters["pred_hit"] + counters["pred_miss"] == counters["predicted"]
        assert counters["zero_diag"] + counters["predicted"] <= counters["outputs"]
        assert sum(entry["outcomes"].values()) == pytest.approx(1)
        assert entry["mac_savings"] == pytest.approx(1 - counters["macs_executed"] / counters["macs_dense"])
        assert entry["mac_savings"] <= entry["mac_savings_ideal"] + 1e-12
    totals = {name: sum(layer["counters"][name] for layer in result["layers"]) for name in op.COUNTER_NAMES}
    assert result["counters"] == totals
    # The tiny network has no other Conv: both denominators are the same.
    assert result["mac_savings_all_conv"] == pytest.approx(result["mac_savings"])
    if window > 1:
        assert result["counters"]["predicted"] > 0 and result["counters"]["pred_miss"] > 0


def test_spatial_correlation_of_the_original_activations(tiny_report, tiny_net, tiny_pixels):
    spatial = tiny_report[0]["spatial_correlation"]
    assert spatial["windows"] == list(WINDOWS)
    activations = [a for a, _ in tiny_net.activations(tiny_pixels)]
    for layer, values in zip(spatial["layers"], activations):
        expected = [zero / total for zero, total in count_zero_windows(values, WINDOWS)]
        assert layer["all_zero_fraction"] == pytest.approx(expected)
        assert layer["shape"] == [4, 8, 8]
    per_layer = [layer["all_zero_fraction"] for layer in spatial["layers"]]
    assert spatial["mean"] == pytest.approx(np.mean(per_layer, axis=0))


def test_html_is_self_contained_and_embeds_every_plot(tiny_report):
    content, out = tiny_report
    html = (out / "report.html").read_text()
    assert html == to_html(content)
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"\b(src|href)\s*=", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html
    # One chart per figure: accuracy, savings, top-1 and agreement against savings, outcomes, savings per
    # layer, outcomes per layer per window, spatial correlation.
    assert html.count("<figure><svg") == html.count("<figure>") == 6 + len(WINDOWS) + 1
    assert html.count("<svg") == html.count("</svg>")
    markdown = (out / "report.md").read_text()
    assert "| k=3 |" in markdown and "<svg" not in markdown


def test_cli_report_and_analyze(tiny_net, tiny_data, tmp_path, capsys):
    folder, _ = tiny_data
    assert main(["report", str(tiny_net.path), "--data", str(folder), "-k", "1,3", "--out", str(tmp_path / "r"),
                 "--no-spatial", "-q"]) == 0
    content = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [result["window"] for result in content["results"]] == [1, 3]
    assert content["spatial_correlation"] is None
    assert main(["analyze", str(tiny_net.path), "--data", str(folder), "-k", "1,2", "-q",
                 "--json", str(tmp_path / "spatial.json")]) == 0
    printed = capsys.readouterr().out
    assert "conv1" in printed and "mean over layers" in printed
    assert json.loads((tmp_path / "spatial.json").read_text())["windows"] == [1, 2]


def test_cli_reports_a_missing_data_folder(tiny_net, tmp_path, capsys):
    assert main(["report", str(tiny_net.path), "--data", str(tmp_path / "missing"), "-q"]) == 3
    assert "does not exist" in capsys.readouterr().err


GRID = dict(windows=(2, 3), patterns=("diagonal", "anti_diagonal", "checkerboard"), margins=("0", "1", "0.5sd"))


@pytest.fixture(scope="module")
def grid_report(tiny_net, tiny_data, tmp_path_factory):
    folder, _ = tiny_data
    windows, patterns, margins = GRID.values()
    return report(tiny_net.path, folder, windows, patterns=patterns, margins=margins, spatial=False, batch_size=3,
                  out_dir=tmp_path_factory.mktemp("grid"), progress=False)


def test_every_pattern_and_margin_is_a_row_equal_to_the_reference(grid_report, tiny_net, tiny_pixels, tiny_data):
    content = grid_report
    _, labels = tiny_data
    sd = content["preactivation_sd"]
    assert set(sd) == set(LAYER_NAMES) and content["preactivation_sd_images"] == 4
    assert [(r["window"], r["pattern"], r["margin"]) for r in content["results"]] == [
        (k, p, m) for k in GRID["windows"] for p in GRID["patterns"] for m in GRID["margins"]]
    assert content["results"][0]["label"] == "k=2" and content["results"][2]["label"] == "k=2 m=0.5sd"
    for result in content["results"]:
        margins = tuple(0.5 * sd[name] if result["margin"] == "0.5sd" else float(result["margin"])
                        for name in LAYER_NAMES)
        predictor = dict(pattern=result["pattern"], margins=margins)
        expected = tiny_net.activations(tiny_pixels, result["window"], **predictor)
        for layer, (_, counters) in zip(result["layers"], expected):
            named = dict(zip(op.COUNTER_NAMES, counters.tolist()))
            for name in ("outputs", "zero_diag", "predicted", "pred_hit", "pred_miss", "macs_dense"):
                assert layer["counters"][name] == named[name], (result["label"], layer["name"], name)
        top1 = tiny_net.logits(tiny_pixels, result["window"], **predictor).argmax(axis=1)
        assert result["top1"] == np.mean(top1 == labels)
        predicted_macs = sum(layer["counters"]["predicted"] * layer["counters"]["macs_dense"]
                             // layer["counters"]["outputs"] for layer in result["layers"])
        assert result["mac_savings_ideal_all_conv"] == pytest.approx(predicted_macs / result["counters"]["macs_dense"])
    # A margin predicts less than none, at the same window and pattern.
    by_label = {r["label"]: r for r in content["results"]}
    assert by_label["k=3 m=1"]["counters"]["predicted"] <= by_label["k=3"]["counters"]["predicted"]


def test_bad_patterns_and_margins_are_one_line_errors(tiny_net, capsys):
    assert main(["report", str(tiny_net.path), "--patterns", "spiral", "-q"]) == 2
    assert "pattern must be one of diagonal" in capsys.readouterr().err
    assert main(["report", str(tiny_net.path), "--margins", "-1", "-q"]) == 2
    assert "margin must be >= 0" in capsys.readouterr().err
