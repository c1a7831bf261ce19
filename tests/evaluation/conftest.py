"""A tiny labelled data set and a tiny Conv→Relu network whose every number can be recomputed exactly.

Pixels, weights and biases are small integers and the preprocessing is the identity on 0..255, so every
convolution sum is an integer below 2**24: float32 is exact in any summation order and the counters
of the compiled op must equal those of the NumPy reference.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from onnxpred import reference
from onnxpred.datasets import PREPROCESSING_KEY, PreprocessingSpec

SIZE = 8
CLASSES = 6
IMAGES = 4
PADS = (1, 1, 1, 1)


@dataclass(frozen=True)
class TinyNet:
    path: Path
    weights: list[tuple[np.ndarray, np.ndarray]]  # (W, B) of each Conv→Relu
    head: np.ndarray  # Gemm weights [CLASSES, channels]

    def activations(self, pixels: np.ndarray, window: int = 1, pattern: str = "diagonal",
                    margins: tuple[float, ...] = (0.0, 0.0)) -> list[tuple[np.ndarray, np.ndarray]]:
        """(output, counters) of each PredictiveConv at ``window`` with ``pattern`` and each layer's
        margin, by the NumPy reference."""
        layers, x = [], pixels
        for (w, b), margin in zip(self.weights, margins):
            x, counters = reference.predictive_conv(x, w, b, pads=PADS, window=window, pattern=pattern,
                                                    margin=margin, audit=True)
            layers.append((x, counters))
        return layers

    def logits(self, pixels: np.ndarray, window: int = 1, **predictor) -> np.ndarray:
        last = self.activations(pixels, window, **predictor)[-1][0]
        return last.mean(axis=(2, 3)) @ self.head.T


def _tiny_model(weights, head) -> onnx.ModelProto:
    nodes, initializers, x = [], [], "input"
    for index, (w, b) in enumerate(weights, start=1):
        initializers += [numpy_helper.from_array(w, f"w{index}"), numpy_helper.from_array(b, f"b{index}")]
        nodes += [helper.make_node("Conv", [x, f"w{index}", f"b{index}"], [f"conv{index}"], name=f"conv{index}",
                                   kernel_shape=[3, 3], pads=list(PADS)),
                  helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"], name=f"relu{index}")]
        x = f"relu{index}"
    initializers.append(numpy_helper.from_array(head, "head"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["features"]),
              helper.make_node("Gemm", ["features", "head"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    identity = PreprocessingSpec(resize=SIZE, crop=SIZE, interpolation="nearest", scale=1.0, mean=(0, 0, 0),
                                 std=(1, 1, 1))
    model.metadata_props.add(key=PREPROCESSING_KEY, value=identity.to_json())
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.fixture(scope="session")
def tiny_pixels() -> np.ndarray:
    """Dark images with one bright rectangle each: zero regions make windows predictable."""
    rng = np.random.default_rng(7)
    pixels = np.zeros((IMAGES, 3, SIZE, SIZE), np.float32)
    for image in pixels:
        top, left = rng.integers(0, SIZE - 3, 2)
        image[:, top:top + 4, left:left + 3] = rng.integers(1, 4, (3, 4, 3))
    return pixels


@pytest.fixture(scope="session")
def tiny_net(tmp_path_factory) -> TinyNet:
    rng = np.random.default_rng(3)
    weights = [(rng.integers(-1, 3, (4, 3, 3, 3)).astype(np.float32), np.full(4, -2, np.float32)),
               (rng.integers(-2, 3, (4, 4, 3, 3)).astype(np.float32), np.array([-3, -1, 0, -5], np.float32))]
    head = rng.standard_normal((CLASSES, 4)).astype(np.float32)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(_tiny_model(weights, head), path)
    return TinyNet(path, weights, head)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_pixels, tiny_net) -> tuple[Path, np.ndarray]:
    """A labels.csv folder of the tiny images: labels are the original model's top-1 except the last
    image, labelled with its lowest-scoring class (a top-1 and a top-5 miss). Returns (folder, labels)."""
    folder = tmp_path_factory.mktemp("data")
    logits = tiny_net.logits(tiny_pixels)
    labels = logits.argmax(axis=1)
    labels[-1] = logits[-1].argmin()
    with open(folder / "labels.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "class_index"])
        for index, image in enumerate(tiny_pixels):
            name = f"image{index}.png"
            Image.fromarray(image.transpose(1, 2, 0).astype(np.uint8)).save(folder / name)
            writer.writerow([name, int(labels[index])])
    return folder, labels
