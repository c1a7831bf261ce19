"""The compiled op against the NumPy simulation of the whole rewritten model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from onnxpred.cli import main
from onnxpred.evaluation import crosscheck


@pytest.mark.parametrize("window, pattern, margin", [(2, None, None), (3, None, None), (3, "checkerboard", 1),
                                                     (2, "anti_diagonal", 2), (3, "both_diagonals", "0.5sd")])
def test_tiny_network_agrees_exactly(tiny_net, tiny_data, window, pattern, margin):
    # Integer-valued tensors (and integer margins; an sd margin compares integers with one float32 threshold
    # on both sides): both sides compute the same sums and decisions, so nothing may differ at all.
    result = crosscheck(tiny_net.path, tiny_data[0], window, pattern=pattern, margin=margin, batch_size=3,
                        end_to_end_tolerance=0, same_inputs_tolerance=0, progress=False)
    assert result.passed, "\n".join(result.lines())
    assert result.images == result.top1_equal == 4
    assert result.max_logit_difference < 1e-5
    for layer in result.layers:
        assert np.array_equal(layer.op[:6], layer.end_to_end[:6])
        assert np.array_equal(layer.op[:6], layer.same_inputs[:6])


def test_a_disagreement_fails_the_command(tiny_net, tiny_data, monkeypatch, capsys):
    # Simulate a faulty op: the reference predicts nothing, so its counters differ from the kernel's.
    from onnxpred.evaluation import simulate

    original = simulate.reference.predictive_conv
    monkeypatch.setattr(simulate.reference, "predictive_conv",
                        lambda *args, **kwargs: original(*args, **{**kwargs, "window": 1}))
    assert main(["crosscheck", str(tiny_net.path), "--data", str(tiny_data[0]), "-k", "3",
                 "--patterns", "diagonal,corners", "-q"]) == 6
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "disagrees with the simulation at k=3, k=3 corners" in captured.err


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("foolbox") is None,
                    reason="needs torch (export) and foolbox (images)")
def test_efficientnet_lite0_on_two_images(tmp_path):
    from onnxpred.models.export import export_model

    path = tmp_path / "lite0.onnx"
    export_model("efficientnet_lite0", path)
    result = crosscheck(path, None, 3, limit=2, progress=False)
    assert result.passed, "\n".join(result.lines())
