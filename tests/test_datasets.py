"""Dataset loading, ImageNet labels and preprocessing (no torch needed)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from onnxpred.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESSING_KEY,
    LabelledImage,
    PreprocessingSpec,
    batches,
    imagenet_classes,
    load_dataset,
    load_image,
)
from onnxpred.errors import InputError

SAMPLE_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample-dev"
TENCH, GOLDFISH, GREAT_WHITE_SHARK = "n01440764", "n01443537", "n01484850"  # class indices 0, 1, 2
LITE_SPEC = PreprocessingSpec(resize=256, crop=224, scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3)


def _save_image(path: Path, size=(40, 30), color=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _model(height, metadata: dict | None = None) -> onnx.ModelProto:
    """An Identity model whose input is [N, 3, height, height] (``height`` None: symbolic)."""
    dims = ["N", 3, height or "H", height or "W"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def _write_labels_csv(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text(text)


# ImageNet classes ------------------------------------------------------------------------------------

def test_imagenet_classes_are_the_sorted_ilsvrc_wnids():
    classes = imagenet_classes()
    assert len(classes.wnids) == len(set(classes.wnids)) == len(classes.names) == 1000
    assert list(classes.wnids) == sorted(classes.wnids)
    assert (classes.index(TENCH), classes.names[0]) == (0, "tench")
    assert (classes.wnids[999], classes.names[999]) == ("n15075141", "toilet_tissue")
    with pytest.raises(KeyError):
        classes.index("n00000000")


def test_imagenet_classes_match_the_sample_dev_list():
    if not SAMPLE_DEV.is_dir():
        pytest.skip(f"{SAMPLE_DEV} is absent (a shared data folder beside the repository)")
    with open(SAMPLE_DEV / "classes.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    classes = imagenet_classes()
    assert [(row["wnid"], row["name"]) for row in rows] == list(zip(classes.wnids, classes.names))


# Preprocessing ---------------------------------------------------------------------------------------

def test_spec_round_trips_through_model_metadata():
    model = _model(224, {PREPROCESSING_KEY: LITE_SPEC.to_json()})
    spec = PreprocessingSpec.from_model(model)
    assert spec == LITE_SPEC and not spec.assumed
    assert json.loads(LITE_SPEC.to_json()) == {
        "resize": 256, "crop": 224, "interpolation": "bilinear", "color": "RGB", "scale": 1.0,
        "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0]}


@pytest.mark.parametrize("height, resize, crop", [(224, 256, 224), (299, 342, 299), (None, 256, 224)])
def test_spec_without_metadata_assumes_torchvision(height, resize, crop):
    spec = PreprocessingSpec.from_model(_model(height))
    assert spec.assumed
    assert (spec.resize, spec.crop, spec.scale) == (resize, crop, 255.0)
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("recorded", [
    "not json",
    json.dumps({"resize": 256, "crop": 224}),  # fields missing
    json.dumps({**json.loads(LITE_SPEC.to_json()), "crop": 300}),  # crop larger than resize
    json.dumps({**json.loads(LITE_SPEC.to_json()), "color": "BGR"}),
    json.dumps({**json.loads(LITE_SPEC.to_json()), "std": [1.0, 0.0, 1.0]}),
    json.dumps([1, 2, 3]),
])
def test_invalid_metadata_is_an_input_error(recorded):
    with pytest.raises(InputError, match=PREPROCESSING_KEY):
        PreprocessingSpec.from_model(_model(224, {PREPROCESSING_KEY: recorded}))


def test_apply_normalises_per_channel():
    image = Image.new("RGB", (300, 260), (255, 127, 0))
    pixels = LITE_SPEC.apply(image)
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[:, 0, 0], [1.0, 0.0, -127 / 128])
    torchvision_pixels = PreprocessingSpec.torchvision().apply(image)
    expected = (np.array([1.0, 127 / 255, 0.0]) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(torchvision_pixels[:, 100, 100], expected, rtol=1e-6)


@pytest.mark.parametrize("size", [(100, 50), (50, 100)])
def test_apply_crops_the_centre_of_the_short_side_resize(size):
    # Black centre, white margins of 30 pixels on the long side: the 40-pixel centre crop is all black.
    image = Image.new("RGB", size, (255, 255, 255))
    long_axis_box = (30, 0, 70, 50) if size[0] > size[1] else (0, 30, 50, 70)
    image.paste((0, 0, 0), long_axis_box)
    spec = PreprocessingSpec(resize=50, crop=40, scale=255.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    pixels = spec.apply(image)
    assert pixels.shape == (3, 40, 40)
    assert pixels.max() == 0.0


def test_apply_converts_grayscale_and_alpha_images():
    for image in (Image.new("L", (64, 64), 128), Image.new("RGBA", (64, 64), (128, 128, 128, 10))):
        spec = PreprocessingSpec(resize=32, crop=32, scale=1.0, mean=(128.0,) * 3, std=(1.0,) * 3)
        assert np.all(spec.apply(image) == 0.0)


# Dataset folders -------------------------------------------------------------------------------------

def test_labels_csv_folder(tmp_path):
    for name in ("b.jpg", "a.png", "c.JPEG"):
        _save_image(tmp_path / name)
    _write_labels_csv(tmp_path, f"file,class_index,wnid\nb.jpg,0,{TENCH}\na.png,2,{GREAT_WHITE_SHARK}\nc.JPEG,7,\n")
    images = load_dataset(str(tmp_path))
    assert images == [LabelledImage(tmp_path / "b.jpg", 0), LabelledImage(tmp_path / "a.png", 2),
                      LabelledImage(tmp_path / "c.JPEG", 7)]


def test_labels_csv_without_wnid_column_and_with_a_byte_order_mark(tmp_path):
    _save_image(tmp_path / "x.jpg")
    _write_labels_csv(tmp_path, "\ufefffile,class_index\r\nx.jpg,5\r\n")
    assert load_dataset(tmp_path) == [LabelledImage(tmp_path / "x.jpg", 5)]


def test_imagenet_style_folder(tmp_path):
    _save_image(tmp_path / GOLDFISH / "one.JPEG")
    _save_image(tmp_path / TENCH / "two.png")
    _save_image(tmp_path / f"{GREAT_WHITE_SHARK}_123.JPEG")
    _save_image(tmp_path / "holiday_00000001.JPEG")  # no wnid: unlabelled
    _save_image(tmp_path / "not-a-class" / "ignored.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_dataset(tmp_path)
    assert [(image.path.relative_to(tmp_path).as_posix(), image.label) for image in images] == [
        ("holiday_00000001.JPEG", None),
        (f"{TENCH}/two.png", 0),
        (f"{GOLDFISH}/one.JPEG", 1),
        (f"{GREAT_WHITE_SHARK}_123.JPEG", 2),
    ]


# The official validation set ------------------------------------------------------------------------

# A devkit's ILSVRC2012_IDs follow WordNet, not the sorted wnids: here a shuffled order, plus a non-leaf synset.
DEVKIT_WNIDS = tuple(np.random.default_rng(5).permutation(imagenet_classes().wnids))
VAL_IDS = (490, 1, 1000, 361, 1)  # ILSVRC2012_ID of ILSVRC2012_val_00000001 ... 05
VAL_WNIDS = (TENCH, GOLDFISH, "n01530575", "n01440764", GREAT_WHITE_SHARK)


def _write_meta_mat(path: Path, wnids=DEVKIT_WNIDS, extra=((1001, "n00001740"),)) -> None:
    """A devkit meta.mat: a ``synsets`` struct array with ILSVRC2012_ID 1.. for ``wnids``, then ``extra``."""
    scipy_io = pytest.importorskip("scipy.io")
    entries = [(ilsvrc_id, wnid, 0) for ilsvrc_id, wnid in enumerate(wnids, start=1)] + \
        [(ilsvrc_id, wnid, 3) for ilsvrc_id, wnid in extra]
    synsets = np.zeros(len(entries), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for index, entry in enumerate(entries):
        synsets[index] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(path, {"synsets": synsets})


def _validation_images(folder: Path, count=4) -> None:
    for number in range(1, count + 1):
        _save_image(folder / f"ILSVRC2012_val_{number:08d}.JPEG")


def _devkit(data: Path, ids=VAL_IDS) -> None:
    _write_meta_mat(data / "meta.mat")
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{value}\n" for value in ids))


def _kaggle_solution(path: Path, rows=None) -> None:
    rows = rows if rows is not None else [
        f"ILSVRC2012_val_{number:08d},{wnid} 10 20 30 40 {wnid} 1 2 3 4" for number, wnid in
        reversed(list(enumerate(VAL_WNIDS, start=1)))]  # Kaggle's rows are in no particular order
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ImageId,PredictionString\n" + "".join(f"{row}\n" for row in rows))


def _labels(images, folder):
    return [(image.path.relative_to(folder).as_posix(), image.label) for image in images]


def _devkit_label(ilsvrc_id: int) -> int:
    return imagenet_classes().index(DEVKIT_WNIDS[ilsvrc_id - 1])


@pytest.mark.parametrize("devkit_at", ["ILSVRC2012_devkit_t12/data", "val", "."])
def test_official_validation_folder_with_the_devkit(tmp_path, devkit_at):
    """The devkit unpacked beside the images (torchvision's layout), or its two files in the folder or beside it."""
    val = tmp_path / "val"
    _validation_images(val)
    _save_image(val / "extra.png")  # not an official name: unlabelled
    _devkit(tmp_path / devkit_at)
    expected = [(f"ILSVRC2012_val_{number:08d}.JPEG", _devkit_label(ilsvrc_id))
                for number, ilsvrc_id in enumerate(VAL_IDS[:4], start=1)]
    assert _labels(load_dataset(val), val) == expected + [("extra.png", None)]
    assert expected[1][1] == _devkit_label(1) != imagenet_classes().index(imagenet_classes().wnids[0])


def test_kaggle_validation_layout(tmp_path):
    """ILSVRC/Data/CLS-LOC/val holds the images, the top of the download LOC_val_solution.csv."""
    val = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    _validation_images(val)
    _kaggle_solution(tmp_path / "LOC_val_solution.csv")
    classes = imagenet_classes()
    assert _labels(load_dataset(val), val) == [
        (f"ILSVRC2012_val_{number:08d}.JPEG", classes.index(wnid)) for number, wnid in enumerate(VAL_WNIDS[:4], 1)]
    (tmp_path / "LOC_val_solution.csv").rename(val / "LOC_val_solution.csv")
    assert [label for _, label in _labels(load_dataset(val), val)] == [0, 1, 10, 0]  # tench, goldfish, brambling, tench


def test_validation_folder_prefers_labels_csv(tmp_path):
    _validation_images(tmp_path, 1)
    _write_labels_csv(tmp_path, "file,class_index\nILSVRC2012_val_00000001.JPEG,7\n")
    assert load_dataset(tmp_path) == [LabelledImage(tmp_path / "ILSVRC2012_val_00000001.JPEG", 7)]


DEVKIT_TXT = "ILSVRC2012_validation_ground_truth.txt"


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "holds official ILSVRC2012_val_\\* images but no ground truth: put the devkit's"),
    (lambda root: (root / DEVKIT_TXT).write_text("1\n2\n3\n4\n"), "meta.mat is missing"),
    (lambda root: _devkit(root, ids=(1, 2, 3)), f"{DEVKIT_TXT} has no label for ILSVRC2012_val_00000004.JPEG"),
    (lambda root: _devkit(root, ids=(1, 2, 0, 4)), f"{DEVKIT_TXT} line 3: '0' is not an ILSVRC2012_ID"),
    (lambda root: _devkit(root, ids=(1, "x", 3, 4)), f"{DEVKIT_TXT} line 2: 'x' is not an ILSVRC2012_ID"),
    (lambda root: _devkit(root, ids=(1, 2, 3, 1001)), f"{DEVKIT_TXT} line 4: '1001' is not an ILSVRC2012_ID"),
    (lambda root: [_devkit(root), (root / "meta.mat").write_bytes(b"not MATLAB")], "meta.mat is not the devkit's"),
    (lambda root: [_devkit(root), _write_meta_mat(root / "meta.mat", DEVKIT_WNIDS[:999])],
     "meta.mat does not map the ILSVRC2012_IDs 1..1000 to 1000 distinct classes"),
    (lambda root: [_devkit(root), _write_meta_mat(root / "meta.mat", DEVKIT_WNIDS[:999] + ("n99999999",))],
     "meta.mat ILSVRC2012_ID 1000: n99999999 is not one of the 1000"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", ["ILSVRC2012_val_00000001"]),
     "LOC_val_solution.csv line 2: expected 2 fields like the header, found 1"),
    (lambda root: (root / "LOC_val_solution.csv").write_text("id,label\n"),
     "the header must be ImageId,PredictionString"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", [f"val_1,{TENCH}"]),
     "line 2: ImageId 'val_1' is not ILSVRC2012_val_ and 8 digits"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", ["ILSVRC2012_val_00000001, "]),
     "line 2: the PredictionString of ILSVRC2012_val_00000001 is empty"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", ["ILSVRC2012_val_00000001,n99999999 1 2 3 4"]),
     "line 2: n99999999 is not one of the 1000"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", [f"ILSVRC2012_val_00000001,{TENCH}"] * 2),
     "line 3: ILSVRC2012_val_00000001 is listed twice"),
    (lambda root: _kaggle_solution(root / "LOC_val_solution.csv", [f"ILSVRC2012_val_00000002,{TENCH}"]),
     "LOC_val_solution.csv has no label for ILSVRC2012_val_00000001.JPEG"),
])
def test_malformed_validation_ground_truth(tmp_path, make, message):
    val = tmp_path / "val"
    _validation_images(val)
    make(tmp_path)
    with pytest.raises(InputError, match=message):
        load_dataset(val)


def test_devkit_without_scipy(tmp_path, monkeypatch):
    _validation_images(tmp_path, 1)
    _devkit(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(InputError, match=r"meta.mat needs scipy: pip install 'onnxpred\[imagenet\]'"):
        load_dataset(tmp_path)


def test_foolbox_images_are_the_default():
    images = load_dataset(None)
    assert len(images) == 20
    assert [image.label for image in images[:3]] == [243, 559, 438]
    assert all(image.path.name.startswith(f"imagenet_{index:02d}_") for index, image in enumerate(images))


def test_sample_dev_folder():
    if not SAMPLE_DEV.is_dir():
        pytest.skip(f"{SAMPLE_DEV} is absent (a shared data folder beside the repository)")
    images = load_dataset(SAMPLE_DEV)
    assert len(images) == 500
    assert [image.label for image in images] == list(range(0, 1000, 2))
    pixels, labels = next(batches(images, PreprocessingSpec.torchvision(), batch_size=4))
    assert pixels.shape == (4, 3, 224, 224) and labels.tolist() == [0, 2, 4, 6]
    assert abs(float(pixels.mean())) < 1.0  # ImageNet-normalised


@pytest.mark.parametrize("labels_csv, message", [
    ("name,label\nx.jpg,1\n", "header must be file,class_index"),
    ("file,class_index\nx.jpg,one\n", "line 2: class_index 'one' is not an integer"),
    ("file,class_index\nx.jpg,-3\n", "line 2: class_index -3 is negative"),
    ("file,class_index\nx.jpg\n", "line 2: expected 2 fields"),
    ("file,class_index\nx.jpg,1,extra\n", "line 2: expected 2 fields"),
    ("file,class_index\nmissing.jpg,1\n", "line 2: image file 'missing.jpg' not found"),
    (f"file,class_index,wnid\nx.jpg,5,{TENCH}\n", f"class_index 5 disagrees with wnid {TENCH}, which is class 0"),
    ("file,class_index,wnid\nx.jpg,5,n99999999\n", "n99999999 is not one of the 1000 ILSVRC-2012 wnids"),
])
def test_malformed_labels_csv(tmp_path, labels_csv, message):
    _save_image(tmp_path / "x.jpg")
    _write_labels_csv(tmp_path, labels_csv)
    with pytest.raises(InputError, match=message):
        load_dataset(tmp_path)


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="is not a folder"):
        load_dataset(tmp_path / "file.jpg")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="no images in"):
        load_dataset(tmp_path / "empty")


def test_unknown_wnid_folder(tmp_path):
    _save_image(tmp_path / "n99999999" / "x.jpg")
    with pytest.raises(InputError, match="n99999999 is not one of the 1000"):
        load_dataset(tmp_path)


def test_unreadable_images(tmp_path):
    (tmp_path / "garbage.jpg").write_bytes(b"definitely not a JPEG")
    truncated = _save_image(tmp_path / "truncated.jpg", size=(200, 200))
    truncated.write_bytes(truncated.read_bytes()[:300])
    for path in (tmp_path / "garbage.jpg", truncated):
        with pytest.raises(InputError, match=f"cannot read image {path}"):
            load_image(path)
    with pytest.raises(InputError, match="cannot read image"):
        list(batches(load_dataset(tmp_path), PreprocessingSpec.torchvision(), batch_size=2))


# Batches ---------------------------------------------------------------------------------------------

def test_batches_keep_order_and_mark_unlabelled(tmp_path):
    images = [LabelledImage(_save_image(tmp_path / f"{index}.png", color=(index, 0, 0)), index or None)
              for index in range(5)]
    spec = PreprocessingSpec(resize=8, crop=8, scale=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    produced = list(batches(images, spec, batch_size=2))
    assert [pixels.shape for pixels, _ in produced] == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert np.concatenate([labels for _, labels in produced]).tolist() == [-1, 1, 2, 3, 4]
    assert np.concatenate([pixels[:, 0, 0, 0] for pixels, _ in produced]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(images, spec, batch_size=0))
