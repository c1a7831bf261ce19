"""Model definitions (torchvision / lukemelas state-dict names), their ONNX export, and real accuracy."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch", reason="the model definitions need torch (pip install onnxpred[models])")

import onnxruntime as ort  # noqa: E402

from onnxpred.datasets import PREPROCESSING_KEY, PreprocessingSpec, batches, load_dataset  # noqa: E402
from onnxpred.errors import InputError, OutputError, UserError  # noqa: E402
from onnxpred.models import (  # noqa: E402
    MODEL_NAMES,
    VGG16,
    AlexNet,
    ResNet18,
    build_model,
    export_model,
    input_resolution,
)
from onnxpred.models.efficientnet_lite import VARIANTS, SameConv2d, _same_padding  # noqa: E402

LITE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _layer_keys(prefix: str, kinds=("weight", "bias")) -> set[str]:
    return {f"{prefix}.{kind}" for kind in kinds}


def _resnet18_keys() -> set[str]:
    keys = {"conv1.weight", *_layer_keys("bn1", BN_KEYS), *_layer_keys("fc")}
    for layer in range(1, 5):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            keys |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            keys |= _layer_keys(f"{prefix}.bn1", BN_KEYS) | _layer_keys(f"{prefix}.bn2", BN_KEYS)
            if layer > 1 and block == 0:
                keys |= {f"{prefix}.downsample.0.weight", *_layer_keys(f"{prefix}.downsample.1", BN_KEYS)}
    return keys


# torchvision's checkpoints: state-dict keys and their count, parameter count, some well-known shapes.
TORCHVISION_LAYOUTS = {
    AlexNet: (
        {key for index in (0, 3, 6, 8, 10) for key in _layer_keys(f"features.{index}")}
        | {key for index in (1, 4, 6) for key in _layer_keys(f"classifier.{index}")},
        16, 61_100_840, {
            "features.0.weight": (64, 3, 11, 11),
            "features.3.weight": (192, 64, 5, 5),
            "features.10.bias": (256,),
            "classifier.1.weight": (4096, 9216),
            "classifier.4.weight": (4096, 4096),
            "classifier.6.bias": (1000,),
        }),
    VGG16: (
        {key for index in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for key in _layer_keys(f"features.{index}")}
        | {key for index in (0, 3, 6) for key in _layer_keys(f"classifier.{index}")},
        32, 138_357_544, {
            "features.0.weight": (64, 3, 3, 3),
            "features.5.weight": (128, 64, 3, 3),
            "features.28.weight": (512, 512, 3, 3),
            "classifier.0.weight": (4096, 25088),
            "classifier.3.weight": (4096, 4096),
            "classifier.6.bias": (1000,),
        }),
    ResNet18: (
        _resnet18_keys(), 122, 11_689_512, {
            "conv1.weight": (64, 3, 7, 7),
            "layer1.0.conv1.weight": (64, 64, 3, 3),
            "layer2.0.downsample.0.weight": (128, 64, 1, 1),
            "layer4.1.bn2.weight": (512,),
            "fc.weight": (1000, 512),
        }),
}

# Exported graphs: Conv nodes, activation nodes (Relu or Clip), Pad nodes (TF "SAME" extra pixel).
EXPORTED_LAYOUT = {
    "alexnet": (5, 7, 0),
    "vgg16": (13, 15, 0),
    "resnet18": (20, 17, 0),
    "efficientnet_lite0": (49, 33, 5),
    "efficientnet_lite1": (64, 43, 4),
    "efficientnet_lite2": (64, 43, 2),
}
LITE_BLOCKS = {"efficientnet_lite0": 16, "efficientnet_lite1": 21, "efficientnet_lite2": 21}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export each model once for the module: ``exported(name) -> ModelProto`` (lite0 with a dynamic batch)."""
    folder = tmp_path_factory.mktemp("exports")
    models = {}

    def export(name: str) -> onnx.ModelProto:
        if name not in models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                models[name] = export_model(name, folder / f"{name}.onnx", dynamic_batch=name in LITE_NAMES)
        return models[name]

    return export


@pytest.mark.parametrize("model_class", list(TORCHVISION_LAYOUTS), ids=lambda cls: cls.__name__)
def test_torchvision_state_dict_names(model_class):
    keys, entries, parameters, known_shapes = TORCHVISION_LAYOUTS[model_class]
    state_dict = model_class().state_dict()
    assert set(state_dict) == keys and len(keys) == entries
    assert sum(value.numel() for key, value in state_dict.items()
               if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))) == parameters
    assert {key: tuple(state_dict[key].shape) for key in known_shapes} == known_shapes
    model_class().load_state_dict(state_dict, strict=True)


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(1)
    source = ResNet18()
    weights = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # given weights: no random-init warning
        loaded = build_model("resnet18", weights=weights)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training


def test_random_init_is_deterministic_and_warns():
    with pytest.warns(UserWarning, match="meaningless"):
        first = build_model("resnet18")
    with pytest.warns(UserWarning, match="meaningless"):
        second = build_model("resnet18")
    assert torch.equal(first.conv1.weight, second.conv1.weight)


def test_bad_weights_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build_model("resnet18", weights=tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights"):
        build_model("resnet18", weights=tmp_path / "garbage.pth")
    truncated = {key: value for key, value in ResNet18().state_dict().items() if key != "fc.bias"}
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(InputError, match="not a resnet18 state dict.*fc.bias"):
        build_model("resnet18", weights=tmp_path / "truncated.pth")


def test_unknown_model_and_bad_output_folder(tmp_path):
    with pytest.raises(UserError, match="unknown model 'resnet50'"):
        export_model("resnet50", tmp_path / "model.onnx")
    with pytest.raises(OutputError, match="does not exist"):
        export_model("resnet18", tmp_path / "missing" / "model.onnx")


@pytest.mark.parametrize("name", LITE_NAMES)
def test_efficientnet_lite_loads_packaged_weights_strictly(name):
    model = build_model(name)  # strict=True inside
    assert len(model._blocks) == LITE_BLOCKS[name]
    assert not hasattr(model._blocks[0], "_expand_conv")  # expansion ratio 1 in the first stage
    assert model._conv_stem.out_channels == 32 and model._conv_head.out_channels == 1280
    assert all(bn.eps == 1e-3 for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert input_resolution(name) == VARIANTS[name].resolution


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # TF puts the odd pixel at the end
    (56, 5, 2, (1, 2)),
    (15, 5, 2, (2, 2)),
    (14, 3, 1, (1, 1)),
    (7, 1, 1, (0, 0)),
])
def test_same_padding(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected


def test_same_conv_matches_explicit_padding_forward_and_backward():
    torch.manual_seed(0)
    conv = SameConv2d(4, 6, kernel=3, stride=2, image_size=10)
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    reference_x = x.detach().clone().requires_grad_(True)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(reference_x, (0, 1, 0, 1)), conv.weight, stride=2)
    actual = conv(x)
    assert actual.shape == (2, 6, 5, 5)
    torch.testing.assert_close(actual, expected)
    actual.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, reference_x.grad)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exported_graph(exported, name):
    model = exported(name)
    onnx.checker.check_model(model)
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == 17
    graph = model.graph
    resolution = input_resolution(name)
    (graph_input,), (graph_output,) = graph.input, graph.output
    input_dims = [dim.dim_param or dim.dim_value for dim in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, graph_input.type.tensor_type.elem_type) == ("input", onnx.TensorProto.FLOAT)
    assert input_dims == ["batch" if name in LITE_NAMES else 1, 3, resolution, resolution]
    assert graph_output.name == "logits"

    op_types = [node.op_type for node in graph.node]
    convs, activations, pads = EXPORTED_LAYOUT[name]
    assert op_types.count("Conv") == convs
    assert op_types.count("Relu") + op_types.count("Clip") == activations
    assert op_types.count("Pad") == pads
    assert "BatchNormalization" not in op_types and "Identity" not in op_types

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    constants = {node.output[0]: node.attribute[0].t for node in graph.node if node.op_type == "Constant"}
    consumers = {tensor: node for node in graph.node for tensor in node.input}
    for node in graph.node:
        if node.op_type == "Conv":
            assert all(tensor in initializers for tensor in node.input[1:]), node.name
        elif node.op_type == "Clip":
            assert [numpy_helper.to_array(constants[tensor]).item() for tensor in node.input[1:]] == [0.0, 6.0]
        elif node.op_type == "Pad":
            assert numpy_helper.to_array(constants[node.input[1]]).tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
            assert consumers[node.output[0]].op_type == "Conv"

    shaped = {value.name for value in graph.value_info}
    assert all(output in shaped for node in graph.node if node.op_type != "Constant"
               for output in node.output if output != "logits")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exported_metadata(exported, name):
    metadata = {prop.key: prop.value for prop in exported(name).metadata_props}
    assert metadata["onnxpred.model_name"] == name
    assert metadata["onnxpred.num_classes"] == "1000"
    recorded = json.loads(metadata[PREPROCESSING_KEY])
    assert set(recorded) == {"resize", "crop", "interpolation", "color", "scale", "mean", "std"}
    resolution = input_resolution(name)
    if name in LITE_NAMES:
        expected = {"resize": round(resolution / 0.875), "crop": resolution, "scale": 1.0,
                    "mean": [127.0] * 3, "std": [128.0] * 3}
    else:
        expected = {"resize": 256, "crop": 224, "scale": 255.0,
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert {key: recorded[key] for key in expected} == expected
    assert (recorded["interpolation"], recorded["color"]) == ("bilinear", "RGB")
    assert not PreprocessingSpec.from_model(exported(name)).assumed


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch deprecates the legacy exporter
def test_random_init_export_warns(tmp_path):
    with pytest.warns(UserWarning, match="meaningless"):
        model = export_model("resnet18", tmp_path / "resnet18.onnx", batch_size=2)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert onnx.load(tmp_path / "resnet18.onnx").metadata_props == model.metadata_props


def _onnx_top1(model: onnx.ModelProto, images) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    spec = PreprocessingSpec.from_model(model)
    return np.concatenate([session.run(None, {"input": pixels})[0].argmax(axis=1)
                           for pixels, _ in batches(images, spec, batch_size=10)])


@pytest.mark.parametrize("name", LITE_NAMES)
def test_efficientnet_lite_classifies_foolbox_images(exported, name):
    images = load_dataset(None)
    labels = np.array([image.label for image in images])
    correct = int((_onnx_top1(exported(name), images) == labels).sum())
    assert correct >= 15, f"{name}: top-1 {correct}/20"


def test_onnx_matches_torch(exported):
    images = load_dataset(None)[:4]
    model = exported("efficientnet_lite0")
    pixels, _ = next(batches(images, PreprocessingSpec.from_model(model), batch_size=4))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"input": pixels})
    with torch.no_grad():
        torch_logits = build_model("efficientnet_lite0")(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-3, atol=1e-3)
