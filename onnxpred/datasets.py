"""Labelled evaluation images and the preprocessing a model expects.

Only numpy and Pillow: evaluating an ONNX model must not need torch. A model exported by
``onnxpred.models`` records its preprocessing in its metadata (:data:`PREPROCESSING_KEY`), so the
evaluation feeds it the pixels it was trained on without being told which model it is.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import importlib.util
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import onnx
from PIL import Image

from .errors import InputError

PREPROCESSING_KEY = "onnxpred.preprocessing"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's evaluation transform: resize the short side to 256, centre-crop 224.
_TORCHVISION_RESIZE_RATIO = 256 / 224

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_WNID = re.compile(r"n\d{8}")
_WNID_FILE_PREFIX = re.compile(r"(n\d{8})_")
_FOOLBOX_IMAGE = re.compile(r"imagenet_(\d+)_(\d+)\.jpg")
# The official ILSVRC-2012 validation set: ILSVRC2012_img_val.tar unpacks into one flat folder of these.
_VAL_IMAGE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG", re.IGNORECASE)
_VAL_IMAGE_ID = re.compile(r"ILSVRC2012_val_(\d{8})")
# Its ground truth: the devkit (ILSVRC2012_devkit_t12.tar.gz unpacks into DEVKIT_DATA) or Kaggle's
# "ImageNet Object Localization Challenge" (the images in ILSVRC/Data/CLS-LOC/val, the CSV at the top).
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
_KAGGLE_VAL_PARTS = ("ILSVRC", "Data", "CLS-LOC")

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class PreprocessingSpec:
    """Resize the short side to ``resize``, centre-crop ``crop``, then ``(x / scale - mean) / std`` per RGB
    channel with x in 0..255; the result is float32 ``[3, crop, crop]``.

    ``assumed`` is True when the model carried no preprocessing metadata and torchvision's was guessed.
    """

    resize: int
    crop: int
    interpolation: str = "bilinear"
    color: str = "RGB"
    scale: float = 255.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    assumed: bool = field(default=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(value) for value in self.mean))
        object.__setattr__(self, "std", tuple(float(value) for value in self.std))
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop {self.crop}, resize {self.resize}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")
        if self.color != "RGB":
            raise ValueError(f"color {self.color!r} is not supported (only 'RGB')")
        if self.scale <= 0 or len(self.mean) != 3 or len(self.std) != 3 or 0 in self.std:
            raise ValueError("need scale > 0 and three means and three non-zero standard deviations")

    @classmethod
    def torchvision(cls, crop: int = 224, *, assumed: bool = False) -> "PreprocessingSpec":
        """torchvision's ImageNet evaluation transform, scaled to a crop size."""
        return cls(resize=round(crop * _TORCHVISION_RESIZE_RATIO), crop=crop, assumed=assumed)

    @classmethod
    def from_model(cls, model: onnx.ModelProto) -> "PreprocessingSpec":
        """The spec recorded in the model's metadata; torchvision's (``assumed``) when there is none."""
        recorded = next((prop.value for prop in model.metadata_props if prop.key == PREPROCESSING_KEY), None)
        if recorded is None:
            return cls.torchvision(_static_input_height(model) or 224, assumed=True)
        try:
            fields = json.loads(recorded)
            return cls(**{name: fields[name] for name in _JSON_FIELDS})
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"the model's {PREPROCESSING_KEY} metadata is invalid ({error}): {recorded}") from None

    def to_json(self) -> str:
        """The metadata value that :meth:`from_model` reads back."""
        return json.dumps({name: value for name, value in asdict(self).items() if name in _JSON_FIELDS})

    def apply(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB")
        width, height = image.size
        # torchvision's rounding: the long side is truncated, the crop offset rounded.
        if width <= height:
            size = (self.resize, int(self.resize * height / width))
        else:
            size = (int(self.resize * width / height), self.resize)
        image = image.resize(size, _INTERPOLATIONS[self.interpolation])
        left = int(round((size[0] - self.crop) / 2))
        top = int(round((size[1] - self.crop) / 2))
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = np.asarray(image, dtype=np.float32) / np.float32(self.scale)
        pixels = (pixels - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))


_JSON_FIELDS = ("resize", "crop", "interpolation", "color", "scale", "mean", "std")


def _static_input_height(model: onnx.ModelProto) -> Optional[int]:
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[2].HasField("dim_value"):
        return None
    return dims[2].dim_value


@dataclass(frozen=True)
class ImageNetClasses:
    """The 1000 ILSVRC-2012 classes; the class index is the position of the wnid in sorted order."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]

    @functools.cached_property
    def _indices(self) -> dict[str, int]:
        return {wnid: index for index, wnid in enumerate(self.wnids)}

    def index(self, wnid: str) -> int:
        """The class index of a wnid; KeyError when it is not an ILSVRC-2012 class."""
        return self._indices[wnid]


@functools.lru_cache(maxsize=None)
def imagenet_classes() -> ImageNetClasses:
    """The class list shipped with onnxpred (``imagenet_classes.csv``: class_index, wnid, name)."""
    text = importlib.resources.files(__package__).joinpath("imagenet_classes.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return ImageNetClasses(tuple(row["wnid"] for row in rows), tuple(row["name"] for row in rows))


def _wnid_label(wnid: str, where: object) -> int:
    try:
        return imagenet_classes().index(wnid)
    except KeyError:
        raise InputError(f"{where}: {wnid} is not one of the 1000 ILSVRC-2012 wnids") from None


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: Optional[int]  # ILSVRC-2012 class index; None for an unlabelled image


def load_dataset(path: Optional[PathLike]) -> list[LabelledImage]:
    """The images of a dataset folder with their labels, in a stable order.

    A folder holds either ``labels.csv`` (header ``file,class_index[,wnid]``) or ImageNet-style images:
    class subfolders named by wnid, files named ``nXXXXXXXX_*``, or the official validation images
    ``ILSVRC2012_val_NNNNNNNN.JPEG`` labelled by their ground truth (see :func:`validation_ground_truth`);
    other images there are unlabelled. ``None`` means the 20 labelled ImageNet samples of the ``foolbox``
    package.
    """
    if path is None:
        return _foolbox_images()
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"dataset {folder} is not a folder")
    labels_file = folder / "labels.csv"
    images = _images_from_labels_csv(labels_file) if labels_file.is_file() else _images_from_imagenet_folder(folder)
    if not images:
        raise InputError(
            f"no images in {folder}: expected labels.csv, class subfolders named by wnid, or image files "
            f"({', '.join(_IMAGE_SUFFIXES)})"
        )
    return images


def _images_from_labels_csv(labels_file: Path) -> list[LabelledImage]:
    images = []
    try:
        with open(labels_file, newline="", encoding="utf-8-sig") as stream:  # -sig: spreadsheets write a BOM
            reader = csv.DictReader(stream)
            if reader.fieldnames is None or reader.fieldnames[:2] != ["file", "class_index"]:
                raise InputError(f"{labels_file}: the header must be file,class_index[,wnid], "
                                 f"found {reader.fieldnames}")
            for row in reader:
                where = f"{labels_file} line {reader.line_num}"
                if None in row or None in row.values():
                    raise InputError(f"{where}: expected {len(reader.fieldnames)} fields like the header")
                images.append(_labels_csv_row(row, labels_file, where))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read {labels_file}: {error}") from None
    return images


def _labels_csv_row(row: dict, labels_file: Path, where: str) -> LabelledImage:
    try:
        label = int(row["class_index"])
    except ValueError:
        raise InputError(f"{where}: class_index {row['class_index']!r} is not an integer") from None
    if label < 0:
        raise InputError(f"{where}: class_index {label} is negative")
    wnid = row.get("wnid", "").strip()
    wnid_label = _wnid_label(wnid, where) if wnid else label
    if wnid_label != label:
        raise InputError(f"{where}: class_index {label} disagrees with wnid {wnid}, which is class {wnid_label}")
    image_path = labels_file.parent / row["file"]
    if not row["file"] or not image_path.is_file():
        raise InputError(f"{where}: image file {row['file']!r} not found")
    return LabelledImage(image_path, label)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()


def _images_from_imagenet_folder(folder: Path) -> list[LabelledImage]:
    images = []
    validation_labels = None  # read when the first official validation image turns up
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and _WNID.fullmatch(entry.name):
            label = _wnid_label(entry.name, entry)
            images += [LabelledImage(path, label) for path in sorted(entry.iterdir()) if _is_image(path)]
        elif _is_image(entry):
            prefix = _WNID_FILE_PREFIX.match(entry.name)
            validation = _VAL_IMAGE.fullmatch(entry.name)
            if prefix:
                label = _wnid_label(prefix.group(1), entry)
            elif validation:
                if validation_labels is None:
                    validation_labels = validation_ground_truth(folder)
                label = validation_labels.label(int(validation.group(1)), entry.name)
            else:
                label = None
            images.append(LabelledImage(entry, label))
    return images


@dataclass(frozen=True)
class ValidationGroundTruth:
    """The class index of each official validation image, by its number (``ILSVRC2012_val_00000001`` is 1)."""

    source: Path  # the file the labels come from
    labels: dict[int, int]

    def label(self, number: int, name: str) -> int:
        try:
            return self.labels[number]
        except KeyError:
            raise InputError(f"{self.source} has no label for {name}") from None


def validation_ground_truth(folder: PathLike) -> ValidationGroundTruth:
    """The ground truth of the official validation images in ``folder``, from the first of these found in
    ``folder``, in its parent, or (Kaggle's layout ``ILSVRC/Data/CLS-LOC/val``) at the top of the download:

    - the devkit's ``ILSVRC2012_validation_ground_truth.txt`` with ``meta.mat`` beside it, directly or in
      ``ILSVRC2012_devkit_t12/data/``: line n holds the ILSVRC2012_ID (1..1000) of image n, and
      ``meta.mat`` maps those IDs to wnids (reading it needs scipy);
    - Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first word of the prediction
      string is the wnid).

    Class indices are the positions of the wnids in sorted order (:func:`imagenet_classes`), as in torchvision.
    """
    folder = Path(folder).resolve()
    places = [folder, folder.parent]
    if len(folder.parents) > 3 and folder.parent.parts[-3:] == _KAGGLE_VAL_PARTS:
        places.append(folder.parents[3])
    for place in places:
        for data in (place, place / DEVKIT_DATA):
            if (data / DEVKIT_GROUND_TRUTH).is_file():
                meta = data / DEVKIT_META
                if not meta.is_file():
                    raise InputError(f"{meta} is missing: the devkit's {DEVKIT_GROUND_TRUTH} holds ILSVRC2012_IDs, "
                                     f"which only {DEVKIT_META} beside it maps to classes")
                return ValidationGroundTruth(data / DEVKIT_GROUND_TRUTH,
                                             _devkit_labels(data / DEVKIT_GROUND_TRUTH, _devkit_classes(meta)))
        if (place / KAGGLE_SOLUTION).is_file():
            return ValidationGroundTruth(place / KAGGLE_SOLUTION, _kaggle_labels(place / KAGGLE_SOLUTION))
    raise InputError(
        f"{folder} holds official ILSVRC2012_val_* images but no ground truth: put the devkit's {DEVKIT_GROUND_TRUTH} "
        f"and {DEVKIT_META} (or the unpacked {DEVKIT_DATA.parts[0]}/), or Kaggle's {KAGGLE_SOLUTION}, in the folder "
        "or beside it"
    )


def _devkit_classes(meta: Path) -> dict[int, int]:
    """ILSVRC2012_ID (1..1000) → class index, from the devkit's ``meta.mat``."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise InputError(f"reading {meta} needs scipy: pip install 'onnxpred[imagenet]'") from None
    try:
        synsets = loadmat(meta, squeeze_me=True)["synsets"]
        pairs = [(int(ilsvrc_id), str(wnid)) for ilsvrc_id, wnid in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])]
    except Exception as error:  # scipy raises several types for a file that is not a MATLAB file
        raise InputError(f"{meta} is not the devkit's meta.mat (a synsets struct with ILSVRC2012_ID and WNID): "
                         f"{type(error).__name__}: {error}") from None
    classes = {}
    for ilsvrc_id, wnid in pairs:
        if 1 <= ilsvrc_id <= 1000:  # the leaf synsets; IDs above 1000 are their ancestors in WordNet
            classes[ilsvrc_id] = _wnid_label(wnid, f"{meta} ILSVRC2012_ID {ilsvrc_id}")
    if sorted(classes) != list(range(1, 1001)) or len(set(classes.values())) != 1000:
        raise InputError(f"{meta} does not map the ILSVRC2012_IDs 1..1000 to 1000 distinct classes")
    return classes


def _devkit_labels(ground_truth: Path, classes: dict[int, int]) -> dict[int, int]:
    labels = {}
    try:
        with open(ground_truth, encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                text = line.strip()
                if not text.isdigit() or int(text) not in classes:
                    raise InputError(f"{ground_truth} line {number}: {text!r} is not an ILSVRC2012_ID (1..1000)")
                labels[number] = classes[int(text)]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {ground_truth}: {error}") from None
    return labels


def _kaggle_labels(solution: Path) -> dict[int, int]:
    labels = {}
    try:
        with open(solution, newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header != ["ImageId", "PredictionString"]:
                raise InputError(f"{solution}: the header must be ImageId,PredictionString, found {header}")
            for row in reader:
                where = f"{solution} line {reader.line_num}"
                if len(row) != 2:
                    raise InputError(f"{where}: expected 2 fields like the header, found {len(row)}")
                image = _VAL_IMAGE_ID.fullmatch(row[0])
                if not image:
                    raise InputError(f"{where}: ImageId {row[0]!r} is not ILSVRC2012_val_ and 8 digits")
                words = row[1].split()
                if not words:
                    raise InputError(f"{where}: the PredictionString of {row[0]} is empty")
                number = int(image.group(1))
                if number in labels:
                    raise InputError(f"{where}: {row[0]} is listed twice")
                labels[number] = _wnid_label(words[0], where)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read {solution}: {error}") from None
    return labels


def _foolbox_images() -> list[LabelledImage]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("no dataset folder given and the foolbox package, whose ImageNet samples are the default, "
                         "is not installed")
    found = []
    for location in spec.submodule_search_locations:
        for path in (Path(location) / "data").glob("imagenet_*.jpg"):
            match = _FOOLBOX_IMAGE.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), LabelledImage(path, int(match.group(2)))))
    if not found:
        raise InputError(f"the foolbox package at {spec.submodule_search_locations[0]} holds no ImageNet samples")
    return [image for _, image in sorted(found, key=lambda pair: pair[0])]


def load_image(path: PathLike) -> Image.Image:
    """An RGB image read fully now, so a corrupt file fails here with its name."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise InputError(f"cannot read image {path}: {error}") from None


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of an evaluation because it cannot be read."""

    path: Path
    error: str  # the InputError's message


def batches(
    images: Sequence[LabelledImage], spec: PreprocessingSpec, batch_size: int,
    *, skipped: Optional[list[SkippedImage]] = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(pixels [B, 3, crop, crop] float32, labels [B] int64)`` in order, -1 for an unlabelled image.

    Batch i holds images ``i * batch_size`` up to the next multiple, so the last batch holds the remainder.
    An unreadable image raises InputError, or, given a ``skipped`` list, is appended to it and left out of
    its batch, which is then smaller (and left out when none of its images could be read).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(images), batch_size):
        chunk, pixels = [], []
        for item in images[start:start + batch_size]:
            try:
                image = load_image(item.path)
            except InputError as error:
                if skipped is None:
                    raise
                skipped.append(SkippedImage(item.path, str(error)))
                continue
            chunk.append(item)
            pixels.append(spec.apply(image))
        if chunk:
            labels = np.array([-1 if item.label is None else item.label for item in chunk], dtype=np.int64)
            yield np.stack(pixels), labels
