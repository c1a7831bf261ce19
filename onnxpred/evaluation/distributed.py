"""The evaluation of :mod:`.evaluate` spread over a Ray cluster.

:func:`evaluate_on_ray` takes the arguments of :func:`.evaluate.evaluate` and returns the same
:class:`.evaluate.Evaluation`, with the same numbers: the images are split into shards of whole batches,
each Ray actor (a worker) builds its own onnxruntime sessions once (the op library is the one installed
on its node) and sends back only the :class:`.evaluate.Tallies` of each shard, which the caller merges
in shard order. A worker that dies is restarted by Ray and its shard run again; only the result of the
run that finished is counted. Image paths must be readable at the same path on every node.

Ray is optional (``pip install 'onnxpred[ray]'``) and imported only here, when asked for.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import onnx
from tqdm import tqdm

from ..datasets import LabelledImage, PreprocessingSpec
from ..errors import EXIT_INTERNAL, EXIT_USAGE, UserError
from .evaluate import EligibleLayer, Evaluation, Evaluator, Tallies, batch_size_for

LOCAL = "local"  # the address that starts a Ray instance on this machine for the run
MAX_RETRIES = 3  # restarts of a dead worker, and re-runs of the shard it was running
DEFAULT_SHARD_BATCHES = 8  # batches a shard holds at most by default
SHARDS_PER_WORKER = 4  # by default, shards are small enough for each worker to get this many
IN_FLIGHT_PER_WORKER = 2  # shards queued at a worker, so that it never waits for the next one
# Ray starts its workers at nice 15; these do all the work and reserve their CPUs, so they run at the
# priority an in-process run has (at 15, anything else running on the machine slows them 2x and more).
WORKER_ENVIRONMENT = {"RAY_worker_niceness": "0"}


class RayUnavailableError(UserError):
    """Ray is not installed, or the cluster cannot be joined."""

    exit_code = EXIT_USAGE


class WorkerLostError(UserError):
    """A worker died more often than Ray retries."""

    exit_code = EXIT_INTERNAL


def import_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("distributing the evaluation needs Ray, which is not installed: "
                                  "pip install 'onnxpred[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how :func:`evaluate_on_ray` spreads an evaluation.

    ``address``: ``"local"`` (or None) starts a Ray instance on this machine for the run; anything else
    (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``) joins that cluster. When this process is already
    connected to Ray (``ray.init`` was called), that connection is used and left open.
    ``workers``: actors to start (default: the cluster's CPUs over ``threads``).
    ``shard_size``: images a worker evaluates per call, rounded up to whole batches (default: up to 8
    batches, small enough for 4 shards a worker).
    """

    address: Optional[str] = None
    workers: Optional[int] = None
    shard_size: Optional[int] = None

    def __post_init__(self):
        for name in ("workers", "shard_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")

    def evaluate(self, *args, **kwargs) -> Evaluation:
        """:func:`evaluate_on_ray` with these options: a drop-in replacement for ``evaluate``."""
        return evaluate_on_ray(*args, address=self.address, workers=self.workers, shard_size=self.shard_size,
                               **kwargs)


def evaluator_for(ray: Optional[RayOptions]):
    """``evaluate`` in this process (``ray`` None) or spread over Ray: both take the same arguments."""
    if ray is None:
        from .evaluate import evaluate

        return evaluate
    return ray.evaluate


def evaluate_on_ray(
    original: onnx.ModelProto,
    windows: Sequence[tuple[object, onnx.ModelProto]],
    layers: Sequence[EligibleLayer],
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    batch_size: int,
    spatial_windows: Sequence[int] = (),
    threads: Optional[int] = None,
    progress: bool = True,
    skip_bad_images: bool = False,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    shard_size: Optional[int] = None,
) -> Evaluation:
    """:func:`.evaluate.evaluate` on Ray workers (see :class:`RayOptions` for the last three arguments).

    ``threads`` is the intra-op threads of each worker's sessions (default 1); each worker reserves as many
    of Ray's CPUs.
    """
    ray = import_ray()
    threads = threads or 1
    batch_size = batch_size_for(original, batch_size, len(images))
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address, workers, threads)
    actors = []
    try:
        start = time.perf_counter()
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        shard_size = _shard_size(shard_size, batch_size, len(images), workers)
        shards = [list(images[first:first + shard_size]) for first in range(0, len(images), shard_size)]
        setup = ray.put(dict(original=original, windows=list(windows), layers=list(layers), spec=spec,
                             batch_size=batch_size, spatial_windows=tuple(spatial_windows), threads=threads,
                             skip_bad_images=skip_bad_images))
        worker_class = ray.remote(num_cpus=threads, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
                                  runtime_env={"env_vars": WORKER_ENVIRONMENT})(_ShardWorker)
        actors = [worker_class.remote() for _ in range(min(workers, len(shards)) or 1)]
        results = _run_shards(ray, actors, setup, shards, progress)
        tallies = Tallies.empty(len(windows), layers, spatial_windows)
        for result in results:
            tallies.merge(result)
        evaluation = tallies.evaluation(windows, layers, time.perf_counter() - start)
        evaluation.distribution = {
            "engine": "ray", "address": address or LOCAL, "nodes": len(ray.nodes()), "workers": len(actors),
            "threads_per_worker": threads, "shard_size": shard_size, "shards": len(shards),
        }
        return evaluation
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _connect(ray, address: Optional[str], workers: Optional[int], threads: int) -> None:
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    try:
        if address in (None, LOCAL):
            ray.init(num_cpus=workers * threads if workers else None, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as error:  # ConnectionError, RuntimeError, ValueError, ... depending on the address
        where = "start a local Ray instance" if address in (None, LOCAL) else f"join the Ray cluster at {address}"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RayUnavailableError(f"cannot {where}: {message}") from None


def _shard_size(requested: Optional[int], batch_size: int, image_count: int, workers: int) -> int:
    """Whole batches, so that every batch holds the images it holds in-process."""
    if requested is None:
        batches = math.ceil(image_count / (workers * SHARDS_PER_WORKER * batch_size))
        return batch_size * max(1, min(DEFAULT_SHARD_BATCHES, batches))
    return batch_size * math.ceil(requested / batch_size)


def _run_shards(ray, actors: list, setup, shards: list[list[LabelledImage]], progress: bool) -> list[Tallies]:
    """Each shard's tallies, in shard order; the next shard goes to the first worker that finishes one."""
    waiting = deque(enumerate(shards))
    pending = {}  # object ref -> (shard index, actor)
    results: list[Optional[Tallies]] = [None] * len(shards)

    def submit(actor) -> None:
        if waiting:
            index, shard = waiting.popleft()
            # Inside a list the setup stays a reference, fetched by a worker only when it has no sessions yet.
            pending[actor.run.remote([setup], shard)] = (index, actor)

    for actor in actors:
        for _ in range(IN_FLIGHT_PER_WORKER):
            submit(actor)
    total = sum(len(shard) for shard in shards)
    try:
        workers = f"{len(actors)} worker{'s' * (len(actors) > 1)}"
        with tqdm(total=total, unit="img", desc=f"evaluating on Ray ({workers})", disable=not progress) as bar:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                index, actor = pending.pop(ref)
                results[index] = _result(ray, ref, shards[index])
                bar.update(len(shards[index]))
                submit(actor)
    finally:
        for ref in pending:  # after an error: the other shards are not wanted
            ray.cancel(ref)
    return results


def _result(ray, ref, shard: list[LabelledImage]) -> Tallies:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, UserError):  # an unreadable image, say: the worker's own one-line error
            raise cause from None
        raise
    except ray.exceptions.RayActorError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkerLostError(
            f"a Ray worker died {MAX_RETRIES + 1} times evaluating the shard of {shard[0].path} to {shard[-1].path}: "
            f"{detail}") from None


class _ShardWorker:
    """A Ray actor: the sessions of one evaluation, built at its first shard, and the tallies of each shard.

    The setup comes with every shard rather than to the constructor: Ray warns about restartable actors
    whose constructor arguments live in the object store, and a restarted worker needs it again anyway.
    """

    def __init__(self):
        self.evaluator: Optional[Evaluator] = None

    def run(self, setup: list, images: list[LabelledImage]) -> Tallies:
        if self.evaluator is None:
            import ray

            arguments = dict(ray.get(setup[0]))
            self.evaluator = Evaluator(arguments.pop("original"), arguments.pop("windows"), arguments.pop("layers"),
                                       arguments.pop("spec"), **arguments)
        return self.evaluator.run(images)
