"""Reading and writing models: external data, models over 2 GB, and writes that leave either the
complete new files or nothing (never a partial file, never the input overwritten)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, helper

from .errors import InputError, OutputError
from .runtime import ModelLike

# Tensors are written to a separate data file above this payload: protobuf cannot serialize a
# message of 2 GiB or more, and the graph itself needs room beside the weights.
LARGE_MODEL_BYTES = 2**31 - 2**26
# With external data, tensors smaller than this stay inside the model file.
EXTERNAL_TENSOR_MIN_BYTES = 1024


def load_model(source: ModelLike, *, external_data: bool = True) -> onnx.ModelProto:
    """A private copy of the model with its tensors in memory: external data is read from beside a
    path unless ``external_data`` is False (for a look at the graph and metadata only)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model
    if isinstance(source, bytes):
        try:
            return onnx.load_model_from_string(source)
        except DecodeError as error:
            raise InputError("the bytes given are not an ONNX model") from error
    path = Path(source)
    model, _ = _read_without_data(path)
    if not external_data:
        return model
    missing = [file for file in _read_without_data(path)[1] if not file.is_file()]
    if missing:
        raise InputError(f"the external data file {missing[0]} of {path} is missing")
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as error:
        raise InputError(f"cannot read the external data of {path}: {error}") from error
    return model


def model_files(path: Union[str, os.PathLike]) -> tuple[Path, ...]:
    """The model file and its external data files: what an output must not overwrite."""
    path = Path(path)
    return (path, *_read_without_data(path)[1])


def _read_without_data(path: Path) -> tuple[onnx.ModelProto, tuple[Path, ...]]:
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path} is empty (0 bytes)")
        model = onnx.load(path, load_external_data=False)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error
    except DecodeError as error:
        raise InputError(f"{path} is not an ONNX model") from error
    if not model.HasField("graph"):  # bytes that happen to decode as a protobuf, but no model
        raise InputError(f"{path} is not an ONNX model")
    locations = (external_data_helper.ExternalDataInfo(t).location for t in _external_tensors(model))
    return model, tuple(dict.fromkeys(path.parent / location for location in locations))


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initializers and Constant values of the main graph stored in external data files."""
    attribute_tensors = (a.t for node in model.graph.node for a in node.attribute if a.HasField("t"))
    for tensor in itertools.chain(model.graph.initializer, attribute_tensors):
        if external_data_helper.uses_external_data(tensor):
            yield tensor


def payload_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the initializers' values, from their shapes: ``ByteSize`` fails on models over 2 GB,
    and reading ``raw_data`` would copy it."""
    return sum(tensor_bytes(tensor) for tensor in model.graph.initializer)


def needs_external_data(model: onnx.ModelProto, inputs: Sequence[Path] = ()) -> bool:
    """Whether ``model`` is written with its tensors in a data file beside it: when it is too large for one
    protobuf (over ~2 GB), or when ``inputs``, the files of the model it came from, had such a file."""
    return len(inputs) > 1 or payload_bytes(model) > LARGE_MODEL_BYTES


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def data_file_name(model_path: Path) -> str:
    return f"{model_path.name}.data"


def check_output_path(output: Path, protected: Iterable[Path]) -> None:
    """Refuse an output whose model or data file is one of the ``protected`` files (the input),
    however it is spelled: relative paths, symbolic links and hard links all count."""
    _check_folder(output)
    targets = [output, output.with_name(data_file_name(output))]
    for target in targets:
        for file in protected:
            if _same_file(target, file):
                raise OutputError(f"refusing to overwrite the input {file} (choose another output path)")


def _check_folder(output: Path) -> None:
    if not output.parent.is_dir():
        raise OutputError(f"cannot write {output}: the folder {output.parent} does not exist")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def writable_target(output: Path) -> Path:
    """The file a write to ``output`` must replace: a symbolic link's target (the link is kept), never
    something that is not a regular file (a device, FIFO, socket or folder), which an atomic replace
    would swap for a regular file."""
    target = Path(os.path.realpath(output)) if output.is_symlink() else output
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise OutputError(f"cannot write {output}: it is {kind}; choose a file path")
    return target


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """A path to write the model (and its data file) to, in a private folder beside ``output``.

    When the block succeeds the files are moved into place with ``os.replace`` (the data file
    before the model that refers to it); when it fails they are deleted. Every command that
    writes files goes through here (:func:`writable_target` says what may be replaced).
    """
    _check_folder(output)
    output = writable_target(output)
    folder = output.parent
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=folder))
    except OSError as error:
        raise OutputError(f"cannot write to {folder}: {error.strerror or error}") from error
    try:
        yield stage / output.name
        for staged in stage.iterdir():
            writable_target(folder / staged.name)  # a data file beside the model, too
        mode = _new_file_mode()
        # The model file last: it is the one readers open.
        for staged in sorted(stage.iterdir(), key=lambda p: p.name == output.name):
            try:
                os.chmod(staged, mode)  # tempfile and onnx create owner-only files
                os.replace(staged, folder / staged.name)
            except OSError as error:
                raise OutputError(f"cannot write {folder / staged.name}: {error.strerror or error}") from error
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_model(model: onnx.ModelProto, path: Path, *, external_data: bool) -> None:
    """Write ``model`` to ``path`` (not atomic: callers write into :func:`staged_output`).

    With ``external_data`` the tensors go to ``<name>.data`` beside it; ``model`` is left unchanged.
    """
    try:
        if external_data:
            detached = onnx.ModelProto()
            detached.CopyFrom(model)  # onnx.save_model moves the tensors it externalises out of the model
            onnx.save_model(
                detached,
                path,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_file_name(path),
                size_threshold=EXTERNAL_TENSOR_MIN_BYTES,
            )
        else:
            onnx.save_model(model, path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def save_model(
    model: onnx.ModelProto,
    path: Union[str, os.PathLike],
    *,
    external_data: Optional[bool] = None,
    protected: Iterable[Path] = (),
) -> Path:
    """Write ``model`` to ``path`` atomically, never over a ``protected`` file.

    ``external_data``: whether tensors go to a data file beside the model; None decides by size
    (models over ~2 GB must).
    """
    path = Path(path)
    check_output_path(path, protected)
    if external_data is None:
        external_data = needs_external_data(model)
    with staged_output(path) as staged:
        write_model(model, staged, external_data=external_data)
    return path


def write_text(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, through :func:`staged_output`."""
    with staged_output(Path(path)) as staged:
        staged.write_text(text, encoding="utf-8")
