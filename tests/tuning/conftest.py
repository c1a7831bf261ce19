"""A small Conv→Relu network and a labelled folder of images it classifies, for tuning tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from onnxpred.datasets import PREPROCESSING_KEY, PreprocessingSpec
from onnxpred.runtime import session

SIZE = 16
CLASSES = 5
IMAGES = 30
CHANNELS = (3, 8, 8, 8)


def _model(rng: np.random.Generator) -> onnx.ModelProto:
    nodes, initializers, x = [], [], "input"
    for index, (c_in, c_out) in enumerate(zip(CHANNELS, CHANNELS[1:]), start=1):
        w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
        b = np.full(c_out, -0.05, np.float32)
        initializers += [numpy_helper.from_array(w, f"w{index}"), numpy_helper.from_array(b, f"b{index}")]
        nodes += [helper.make_node("Conv", [x, f"w{index}", f"b{index}"], [f"conv{index}"], name=f"conv{index}",
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"], name=f"relu{index}")]
        x = f"relu{index}"
    head = rng.standard_normal((CLASSES, CHANNELS[-1])).astype(np.float32) * 4
    initializers.append(numpy_helper.from_array(head, "head"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["features"]),
              helper.make_node("Gemm", ["features", "head"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = PreprocessingSpec(resize=SIZE, crop=SIZE, interpolation="nearest", scale=255.0, mean=(0.5, 0.5, 0.5),
                             std=(0.25, 0.25, 0.25))
    model.metadata_props.add(key=PREPROCESSING_KEY, value=spec.to_json())
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.fixture(scope="session")
def small_net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune-model") / "small.onnx"
    onnx.save(_model(np.random.default_rng(11)), path)
    return path


def _write_images(folder: Path, model_path: Path, labelled: bool) -> None:
    rng = np.random.default_rng(5)
    pixels = np.zeros((IMAGES, SIZE, SIZE, 3), np.uint8)
    for image in pixels:  # blobs on a dark ground: zero regions make windows predictable
        for _ in range(2):
            top, left = rng.integers(0, SIZE - 5, 2)
            image[top:top + 5, left:left + 5] = rng.integers(60, 255, (5, 5, 3))
    spec = PreprocessingSpec.from_model(onnx.load(model_path))
    inputs = ((pixels.transpose(0, 3, 1, 2) / spec.scale - 0.5) / 0.25).astype(np.float32)
    logits = session(model_path).run(None, {"input": inputs})[0]
    labels = logits.argmax(axis=1)
    labels[::4] = logits[::4].argmin(axis=1)  # some misses, so top-1 is not 100%
    rows = []
    for index, image in enumerate(pixels):
        name = f"image{index:02d}.png"
        Image.fromarray(image).save(folder / name)
        rows.append([name, int(labels[index])] if labelled else [name, ""])
    if labelled:
        with open(folder / "labels.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["file", "class_index"])
            writer.writerows(rows)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, small_net) -> Path:
    folder = tmp_path_factory.mktemp("tune-data")
    _write_images(folder, small_net, labelled=True)
    return folder


@pytest.fixture(scope="session")
def unlabelled_data(tmp_path_factory, small_net) -> Path:
    folder = tmp_path_factory.mktemp("tune-unlabelled")
    _write_images(folder, small_net, labelled=False)
    return folder
