"""The evaluation spread over a local Ray instance: the same report numbers as in-process, whatever the shard
size, a dead worker's shard counted once, unreadable images stopping or skipped, and Ray as an optional import."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from onnxpred.cli import main
from onnxpred.datasets import PreprocessingSpec, load_dataset
from onnxpred.errors import InputError, UnsupportedModelError
from onnxpred.evaluation import analyze, report
from onnxpred.evaluation.distributed import RayOptions, RayUnavailableError, evaluate_on_ray
from onnxpred.evaluation.evaluate import Evaluator, eligible_layers
from onnxpred.rewriter import rewrite_with_summary, set_windows

from ray_faults import CRASH_SUFFIX  # tests/ is on sys.path, see tests/conftest.py

WINDOWS = (1, 2, 3)
IMAGES = 11  # with batches of 2 and shards of 2 or 6: an odd last batch, a short last shard
BATCH = 2
TIMING_KEYS = {"run_time_s", "evaluation_time_s", "created", "distribution"}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for this module; its workers can be told to die (see ray_faults.py)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[ray]'")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    tests = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": python_path},
                          "worker_process_setup_hook": "ray_faults.crash_once_on_marker"})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """IMAGES small dark pictures with a bright patch, labelled with class indices of the tiny network."""
    folder = tmp_path_factory.mktemp("ray-data")
    rng = np.random.default_rng(11)
    lines = ["file,class_index"]
    for index in range(IMAGES):
        pixels = np.zeros((8, 8, 3), np.uint8)
        top, left = rng.integers(0, 5, 2)
        pixels[top:top + 4, left:left + 3] = rng.integers(1, 4, (4, 3, 3))
        Image.fromarray(pixels).save(folder / f"image{index:02d}.png")
        lines.append(f"image{index:02d}.png,{rng.integers(0, 6)}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def numbers(content):
    """A report without what differs from run to run: run times, creation date, how the work was spread."""
    if isinstance(content, dict):
        return {key: numbers(value) for key, value in content.items() if key not in TIMING_KEYS}
    if isinstance(content, list):
        return [numbers(value) for value in content]
    return content


def _report(tiny_net, data, out, **options):
    return report(tiny_net.path, data, WINDOWS, out_dir=out, batch_size=BATCH, progress=False, **options)


@pytest.fixture(scope="module")
def in_process(tiny_net, images, tmp_path_factory):
    return _report(tiny_net, images, tmp_path_factory.mktemp("in-process"))


@pytest.mark.parametrize("shard_size, workers", [(2, 2), (5, None)])
def test_same_numbers_as_in_process(local_ray, tiny_net, images, in_process, tmp_path, shard_size, workers):
    distributed = _report(tiny_net, images, tmp_path, ray=RayOptions(workers=workers, shard_size=shard_size))
    assert numbers(distributed) == numbers(in_process)
    assert distributed["images"] == IMAGES and distributed["results"][2]["counters"]["predicted"] > 0
    shards = -(-IMAGES // (shard_size + shard_size % BATCH))  # shards of whole batches: 2 or 6 images
    assert distributed["distribution"] == {"engine": "ray", "address": "local", "nodes": 1, "workers": 2,
                                           "threads_per_worker": 1, "shard_size": -(-shard_size // BATCH) * BATCH,
                                           "shards": shards}
    assert in_process["distribution"] is None


def test_a_dead_workers_shard_is_counted_once(local_ray, tiny_net, images, in_process, tmp_path):
    data = shutil.copytree(images, tmp_path / "data")
    marker = data / f"image05.png{CRASH_SUFFIX}"
    marker.touch()
    distributed = _report(tiny_net, data, tmp_path / "out", ray=RayOptions(shard_size=4))
    assert not marker.exists()  # a worker died reading image05.png; Ray restarted it and ran the shard again
    assert numbers(distributed) == numbers(in_process) | {"data": str(data), "image_list": [
        {**entry, "file": str(data / Path(entry["file"]).name)} for entry in in_process["image_list"]]}


def _with_a_corrupt_image(images: Path, folder: Path) -> Path:
    data = shutil.copytree(images, folder)
    (data / "image03.png").write_bytes(b"not a PNG")
    return data


@pytest.mark.parametrize("ray_options", [None, RayOptions(shard_size=4)], ids=["in-process", "ray"])
def test_a_corrupt_image_stops_the_run_with_its_name(request, tiny_net, images, tmp_path, ray_options):
    if ray_options:
        request.getfixturevalue("local_ray")
    data = _with_a_corrupt_image(images, tmp_path / "data")
    with pytest.raises(InputError, match=f"cannot read image {data / 'image03.png'}"):
        _report(tiny_net, data, tmp_path / "out", ray=ray_options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ray_options", [None, RayOptions(shard_size=4)], ids=["in-process", "ray"])
def test_skipped_images_are_listed_and_left_out(request, tiny_net, images, tmp_path, ray_options):
    if ray_options:
        request.getfixturevalue("local_ray")
    data = _with_a_corrupt_image(images, tmp_path / "data")
    skipping = _report(tiny_net, data, tmp_path / "out", ray=ray_options, skip_bad_images=True)
    assert [entry["file"] for entry in skipping["skipped_images"]] == [str(data / "image03.png")]
    assert "cannot read image" in skipping["skipped_images"][0]["error"]
    assert "Skipped: 1 unreadable images, left out of every number" in (tmp_path / "out" / "report.md").read_text()
    # Every number is that of the data set without the image.
    (data / "image03.png").unlink()
    lines = (data / "labels.csv").read_text().splitlines()
    (data / "labels.csv").write_text("\n".join(line for line in lines if "image03" not in line) + "\n")
    without = _report(tiny_net, data, tmp_path / "without")
    assert skipping["images"] == IMAGES - 1 == without["images"]
    assert numbers(skipping) | {"skipped_images": []} == numbers(without)


def test_progress_counts_skipped_images_and_a_fixed_batch_refuses_a_short_one(tiny_net, images, tmp_path):
    data = _with_a_corrupt_image(images, tmp_path / "data")
    model = onnx.load(tiny_net.path)
    rewritten, _ = rewrite_with_summary(model, window=1, audit=True, expose_counters=True)
    layers = eligible_layers(rewritten)
    arguments = (model, [(2, set_windows(rewritten, 2))], layers, PreprocessingSpec.from_model(model))
    done = []
    tallies = Evaluator(*arguments, batch_size=BATCH, spatial_windows=(2,), skip_bad_images=True).run(
        load_dataset(data), done.append)
    assert sum(done) == IMAGES and tallies.original.images == IMAGES - 1 and len(tallies.skipped) == 1
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = BATCH  # a model fixed to batches of 2
    with pytest.raises(UnsupportedModelError, match="fixed to 2, and skipping unreadable images left a batch of 1"):
        Evaluator(*arguments, batch_size=BATCH, skip_bad_images=True).run(load_dataset(data))


def test_cli_report_and_analyze_on_ray(local_ray, tiny_net, images, in_process, tmp_path, capsys):
    assert main(["report", str(tiny_net.path), "--data", str(images), "-k", "1,2,3", "--batch-size", str(BATCH),
                 "--out", str(tmp_path / "r"), "-q", "--ray", "--workers", "2", "--shard-size", "4"]) == 0
    assert numbers(json.loads((tmp_path / "r" / "report.json").read_text())) == numbers(in_process)
    assert main(["analyze", str(tiny_net.path), "--data", str(images), "-k", "1,2,3", "-q", "--ray",
                 "--json", str(tmp_path / "spatial.json")]) == 0
    spatial = json.loads((tmp_path / "spatial.json").read_text())
    assert spatial == {**in_process["spatial_correlation"], "skipped_images": []}
    assert analyze(tiny_net.path, images, WINDOWS, progress=False) == spatial
    capsys.readouterr()
    assert main(["report", str(tiny_net.path), "--data", str(images), "-q", "--workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == "onnxpred report: error: --workers and --shard-size need --ray"


def test_without_ray_installed(monkeypatch, tiny_net, images, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayUnavailableError, match=r"needs Ray, which is not installed: pip install 'onnxpred\[ray\]'"):
        evaluate_on_ray(None, [], [], [], None, batch_size=1)
    assert main(["report", str(tiny_net.path), "--data", str(images), "--out", str(tmp_path / "r"), "-q",
                 "--ray"]) == 2
    error = capsys.readouterr().err
    assert error == ("onnxpred report: error: distributing the evaluation needs Ray, which is not installed: "
                     "pip install 'onnxpred[ray]'\n")
    # In-process runs never import it.
    assert main(["analyze", str(tiny_net.path), "--data", str(images), "-q"]) == 0
