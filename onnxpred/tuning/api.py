"""``onnxpred.tune``: the best per-layer prediction of a model under an accuracy budget.

Stages (each stated with its time in the result): split the images (:mod:`.split`); screen every layer's
candidates on a few tuning images with NumPy (:mod:`.space`); measure the surviving candidates one layer
at a time in the whole model on a subset of the tuning images (:mod:`.sensitivity`); combine them along
a Lagrangian path and pick, on the whole tuning part, the configuration of largest gain within the budget
(:mod:`.search`); with objective ``latency`` time it against the original and drop the layers that do not
pay (:mod:`.timing`); finally run it once on the confirmation part, which nothing before has seen.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import onnx
from tqdm import tqdm

from ..datasets import PreprocessingSpec, batches, load_dataset
from ..errors import UnsupportedModelError, UserError
from ..evaluation.evaluate import AccuracyTally, batch_size_for, eligible_layers, evaluate, fixed_batch_size
from ..evaluation.report import MODEL_NAME_KEY, describe_data
from ..evaluation.scales import SCALE_IMAGES, preactivation_activity, preactivation_sd
from ..evaluation.stats import wilson_interval
from ..rewriter.api import rewrite_with_summary
from ..rewriter.passes.order_channels import UNOBSERVABLE_ACTIVITY, ordered_by_default
from ..model_io import load_model
from ..rewriter.selection import Margin, Predictor
from ..runtime import quiet_options, session
from .search import (METRICS, OBJECTIVES, Configuration, Search, counted_macs, gain_of, lagrangian_path,
                     metric_points)
from .sensitivity import Measured, measure_layers
from .space import DEFAULT_MARGINS, DEFAULT_WINDOWS, SearchSpace, screen
from .split import DEFAULT_CONFIRMATION_FRACTION, DEFAULT_SEED, split_images
from .timing import EndToEnd, Timer, single_image_feeds

PathLike = Union[str, os.PathLike]
DEFAULT_TIME_BUDGET_S = 20 * 60
# A layer's own kernel at window 1 replaces onnxruntime's Conv under objective latency when it takes at
# most this share of its time: a layer's profiled time varies by a few percent from run to run.
KERNEL_SWAP_RATIO = 0.9
SCREENING_IMAGES = 8
# Shares of the time budget the stages may use before they cut their work short.
_SENSITIVITY_SHARE, _SEARCH_SHARE = 0.55, 0.85


@dataclass
class TuneResult:
    """What :func:`tune` found. ``model`` is the tuned model (None when nothing was chosen), ``window_map``
    its per-layer settings in ``onnxpred rewrite --window-map`` form, ``content`` every number (the
    report's JSON), ``goal_met`` whether the confirmation part kept the budget (and the savings goal)."""

    model: Optional[onnx.ModelProto]
    window_map: dict
    content: dict
    goal_met: bool
    messages: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return self.content["outcome"]

    @property
    def layers(self) -> list[str]:
        return list(self.window_map)


def _thread_counts(threads: Union[int, Sequence[int], None]) -> list[int]:
    if threads is None:
        return sorted({1, os.cpu_count() or 1})
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts or any(int(t) != t or t < 1 for t in counts):
        raise UserError(f"thread counts must be positive integers, got {threads}")
    return sorted(set(int(t) for t in counts))


def _points_with_ci(hits: int, trials: int) -> dict:
    low, high = wilson_interval(hits, trials)
    return {"value": hits / trials if trials else None, "hits": hits, "trials": trials, "ci95": [low, high]}


def _accuracy(tally: AccuracyTally, agreement: bool = True) -> dict:
    entry = {"images": tally.images, "labelled": tally.labelled,
             "top1": _points_with_ci(tally.top1, tally.labelled) if tally.labelled else None}
    if agreement:
        entry["agreement"] = _points_with_ci(tally.agreement, tally.images)
    return entry


def tune(
    model: Union[PathLike, onnx.ModelProto],
    data: Optional[PathLike] = None,
    *,
    max_drop: float = 1.0,
    metric: str = "top1",
    objective: str = "latency",
    windows: Sequence[int] = DEFAULT_WINDOWS,
    patterns: Optional[Sequence[str]] = None,
    margins: Sequence[object] = DEFAULT_MARGINS,
    threads: Union[int, Sequence[int], None] = None,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    min_savings: Optional[float] = None,
    confirmation_fraction: float = DEFAULT_CONFIRMATION_FRACTION,
    seed: int = DEFAULT_SEED,
    limit: Optional[int] = None,
    batch_size: int = 8,
    sensitivity_images: int = 128,
    candidates_per_layer: int = 6,
    timing_images: int = 16,
    progress: bool = True,
    timer: Optional[Timer] = None,
    evaluator: Callable = evaluate,
    fp32_model: Union[PathLike, onnx.ModelProto, None] = None,
    order_channels: Optional[bool] = None,
) -> TuneResult:
    """Tune the prediction of every eligible layer of ``model`` on the images of ``data`` (a dataset
    folder; None: the 20 built-in ImageNet samples).

    ``max_drop``: the largest drop of ``metric`` (``top1``: against the labels; ``agreement``: top-1
    agreement with the original, for unlabelled images) in points. ``objective``: ``macs`` (MACs of the
    predicted outputs), ``executed`` (MACs the kernels skip) or ``latency`` (time in onnxruntime; layers
    that do not pay stay onnxruntime's Conv, and a tuned model slower than the original at any of
    ``threads`` is not returned). ``windows``/``patterns``/``margins``: the candidates (margins absolute or
    like ``"0.5sd"``). ``min_savings``: a goal for the objective's MAC savings over all Conv MACs (objectives
    macs/executed). ``time_budget_s``: stages cut their work short to finish about then. ``timer`` and
    ``evaluator`` replace the time measurements and the evaluation pass (tests, distributed runs).
    ``fp32_model``: for a quantized ``model``, the float model it was quantized from; the confirmation also
    gives its top-1, so the result states the drop against it as well as against ``model``.
    ``order_channels``: every rewrite, timed or written, has its channels ordered by their activity on the
    tuning images (``rewrite --order-channels``), which changes no result but can change the time; None:
    for int8 models (:func:`~onnxpred.rewriter.passes.order_channels.ordered_by_default`).
    """
    started = time.monotonic()
    deadline = started + time_budget_s
    stages: dict[str, float] = {}

    def stage_done(name: str, since: float) -> float:
        now = time.monotonic()
        stages[name] = now - since
        return now

    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")
    if not max_drop >= 0:
        raise UserError(f"the accuracy budget --max-drop must be >= 0 points, got {max_drop}")
    if min_savings is not None and not 0 <= min_savings <= 1:
        raise UserError(f"the savings goal must be a fraction between 0 and 1, got {min_savings}")
    if time_budget_s <= 0:
        raise UserError(f"the time budget must be positive, got {time_budget_s} s")
    space = SearchSpace.create(windows, patterns, margins)
    thread_counts = _thread_counts(threads)
    eval_threads = max(thread_counts)

    original = load_model(model)
    fp32 = load_model(fp32_model) if fp32_model is not None else None
    spec = PreprocessingSpec.from_model(original)
    images = load_dataset(data)[:limit]
    if metric == "top1" and not any(image.label is not None for image in images):
        raise UserError("metric top1 needs labelled images; use --metric agreement for unlabelled ones")
    split = split_images(images, confirmation_fraction, seed)
    if metric == "top1" and not any(image.label is not None for image in split.tuning):
        raise UserError("the tuning part holds no labelled image; use more images or --metric agreement")
    base, summary = rewrite_with_summary(original, window=1, expose_counters=True)
    layers = eligible_layers(base)
    if not layers:
        raise UnsupportedModelError("no layer of the model can be rewritten, so there is nothing to tune")
    conv_macs = summary.conv_macs if not summary.unknown_macs else None
    batch = batch_size_for(original, batch_size, len(split.tuning))
    messages: list[str] = []
    say = (lambda text: (messages.append(text), tqdm.write(text) if progress else None))
    say(f"tuning {len(layers)} layers on {len(split.tuning)} images, confirming on {len(split.confirmation)}; "
        f"time budget {time_budget_s / 60:.0f} min")
    activity = None
    if order_channels is None:
        order_channels = ordered_by_default(base)
    if order_channels:
        activity_images = split.tuning[:SCALE_IMAGES]
        activity = preactivation_activity(original, base, activity_images, spec, batch_size=batch,
                                          threads=eval_threads)
        order_channels = bool(activity)
        say(f"channels ordered by their activity on {len(activity_images)} tuning images" if activity
            else UNOBSERVABLE_ACTIVITY)

    # Screening and sensitivity images: the first tuning images, decoded once.
    now = time.monotonic()
    sensitivity_set = split.tuning[:max(sensitivity_images, 1)]
    pixels = [p for p, _ in batches(sensitivity_set, spec, batch_size_for(original, batch, len(sensitivity_set)))]
    reference_session = session(original, **quiet_options(eval_threads))
    feed_name = reference_session.get_inputs()[0].name
    output_name = original.graph.output[0].name
    reference_logits = np.concatenate([reference_session.run([output_name], {feed_name: p})[0] for p in pixels])
    screening_pixels = _first_images(pixels, SCREENING_IMAGES, fixed_batch_size(original))
    scales = preactivation_sd(original, base, split.tuning[:SCREENING_IMAGES], spec, batch_size=batch,
                              threads=eval_threads) if space.needs_scales else None
    try:
        screened = screen(original, base, screening_pixels, space, keep=candidates_per_layer, scales=scales,
                          threads=eval_threads)
        candidates = {layer: [(str(s.predictor), _absolute(s.predictor, layer, scales)) for s in found]
                      for layer, found in screened.items()}
        screening_note = None
    except UnsupportedModelError as error:  # a pre-activation the original does not expose
        screened = None
        candidates = {layer.name: [(f"k={k}", Predictor(k)) for k in space.windows] for layer in layers}
        screening_note = f"no screening ({error}); every window measured with the diagonal pattern and margin 0"
        say(screening_note)
    now = stage_done("screening", now)

    timing_feeds = single_image_feeds(pixels, feed_name, timing_images) if fixed_batch_size(original) in (None, 1) \
        else [{feed_name: p} for p in pixels[:max(1, timing_images // batch)]]
    own_timer = timer is None
    timer = timer or Timer(timing_feeds)
    try:
        total = sum(len(c) for c in candidates.values())
        with tqdm(total=total, unit="candidate", desc="sensitivity", disable=not progress) as bar:
            measured = measure_layers(
                original, candidates, pixels, reference_logits, threads=eval_threads,
                timer=timer if objective == "latency" else None, timing_threads=thread_counts,
                channel_activity=activity,
                on_candidate=lambda: bar.update(1),
                deadline=started + _SENSITIVITY_SHARE * time_budget_s)
        out_of_time = sum(len(m) for m in measured.values()) < total
        if out_of_time:
            say("the time budget cut the sensitivity measurements short: some candidates were not measured")
        now = stage_done("sensitivity", now)

        gain = gain_of(objective)
        path = lagrangian_path(measured, gain)
        search = Search(original, base, layers, lambda models: evaluator(
            original, models, layers, split.tuning, spec, batch_size=batch, threads=eval_threads, progress=False),
            metric, max_drop)
        rounds = max(1, int(np.ceil(np.log(len(path) + 1) / np.log(4))))
        with tqdm(total=rounds * 3, unit="config", desc="search", disable=not progress) as bar:
            best = search.best_on_path(path, started + _SEARCH_SHARE * time_budget_s, bar.update) if path else None
        if search.cut_short:
            say("the time budget cut the search short: the configuration is the best found so far")
        out_of_time = out_of_time or search.cut_short
        if search.original_tally is None:  # nothing to search: the original's figures on the tuning part
            search.original_tally = evaluator(original, [], layers, split.tuning, spec, batch_size=batch,
                                              threads=eval_threads, progress=False).original
        config: Configuration = dict(best.config) if best else {}
        now = stage_done("search", now)
        if objective == "latency":
            config.update(_faster_kernels(original, layers, config, timer, thread_counts, say, activity))

        timings, dropped = [], []
        if config:
            config, timings, dropped = _never_slower(original, config, objective, thread_counts, timer, say,
                                                     activity)
        now = stage_done("timing", now)
    finally:
        if own_timer:
            timer.close()

    window_map = {layer: m.predictor.to_json() for layer, m in config.items()}
    tuned = confirmation = None
    predicted_share = skipped_share = None
    if config:
        tuned, _ = rewrite_with_summary(original, layers=list(config), window_map=window_map, channels_last=True,
                                        channel_activity=activity)
        counting, _ = rewrite_with_summary(original, layers=list(config), window_map=window_map, expose_counters=True)
        confirmation = evaluator(original, [("tuned", counting)], eligible_layers(counting), split.confirmation, spec,
                                 batch_size=batch_size_for(original, batch_size, len(split.confirmation)),
                                 threads=eval_threads, progress=progress)
        run = confirmation.windows[0]
        predicted, skipped = counted_macs(run.counters, run.tally.images)
        if conv_macs:
            predicted_share, skipped_share = predicted / conv_macs, skipped / conv_macs
    fp32_tally = None
    if fp32 is not None:
        fp32_tally = evaluator(fp32, [], [], split.confirmation, PreprocessingSpec.from_model(fp32),
                               batch_size=batch_size_for(fp32, batch_size, len(split.confirmation)),
                               threads=eval_threads, progress=False).original
    now = stage_done("confirmation", now)

    outcome, advice = _outcome(config, objective, measured, dropped, max_drop, metric, len(split.tuning),
                               out_of_time, say)
    confirmation_drop = None
    goal_reasons = []
    if confirmation is not None:
        confirmation_drop = metric_points(confirmation.original, metric) - metric_points(confirmation.windows[0].tally,
                                                                                       metric)
        if confirmation_drop > max_drop + 1e-9:
            goal_reasons.append(f"on the confirmation images the {metric} drop is {confirmation_drop:.2f} points, "
                                f"over the budget of {max_drop:g}")
    if min_savings is not None and objective != "latency":
        achieved = (predicted_share if objective == "macs" else skipped_share) or 0.0
        if achieved < min_savings:
            goal_reasons.append(f"the {objective} savings reached {achieved:.1%} of all Conv MACs, short of the goal "
                                f"of {min_savings:.1%}")
    goal_met = not goal_reasons
    for reason in goal_reasons:
        say(f"goal not met: {reason}; the configuration is the best effort found")

    content = {
        "model": original.graph.name if isinstance(model, onnx.ModelProto) else str(model),
        "model_name": next((p.value for p in original.metadata_props if p.key == MODEL_NAME_KEY), None),
        "data": describe_data(data)[0],
        "data_note": describe_data(data)[1],
        "images": len(images),
        "split": split.record(),
        "metric": metric,
        "objective": objective,
        "max_drop_points": max_drop,
        "min_savings": min_savings,
        "search_space": space.to_json(),
        "channels_ordered": order_channels,
        "threads": thread_counts,
        "time_budget_s": time_budget_s,
        "cut_short_by_time_budget": out_of_time,
        "outcome": outcome,
        "goal_met": goal_met,
        "goal_not_met_because": goal_reasons,
        "advice": advice,
        "macs_per_image_all_conv": conv_macs,
        "screening": screening_note or f"{SCREENING_IMAGES} tuning images, {candidates_per_layer} candidates a layer "
                                       "kept from the frontier of predicted share against energy lost",
        "sensitivity_images": len(sensitivity_set),
        "preactivation_sd": scales,
        "layers": _layer_entries(layers, screened, measured, config, dropped, gain, conv_macs),
        "window_map": window_map,
        "tuning": {"original": _accuracy(search.original_tally, agreement=False),
                   "drop_model": search.drop_model.to_json(),
                   "configurations": [t.to_json(conv_macs) | {"chosen": best is not None and t is best}
                                      for t in search.tried]},
        "confirmation": None if confirmation is None else {
            "original": _accuracy(confirmation.original, agreement=False),
            "tuned": _accuracy(confirmation.windows[0].tally),
            "drop_points": confirmation_drop,
            "fp32": None if fp32_tally is None else _accuracy(fp32_tally, agreement=False),
            "top1_drop_vs_fp32_points": _top1_drop(fp32_tally, confirmation.windows[0].tally),
            "predicted_share_all_conv": predicted_share,
            "skipped_share_all_conv": skipped_share,
        },
        "end_to_end": [t.to_json() for t in timings],
        "stages_s": stages,
        "run_time_s": time.monotonic() - started,
    }
    return TuneResult(tuned, window_map, content, goal_met, messages)


def _top1_drop(reference: Optional[AccuracyTally], tally: AccuracyTally) -> Optional[float]:
    """Top-1 points ``tally`` lost against ``reference`` on the same images; None without both or labels."""
    if reference is None or not tally.labelled:
        return None
    return metric_points(reference, "top1") - metric_points(tally, "top1")


def _first_images(pixels: Sequence[np.ndarray], count: int, fixed: Optional[int]) -> list[np.ndarray]:
    """The first ``count`` images of the batches (whole batches for a model with a fixed batch size)."""
    taken, total = [], 0
    for batch in pixels:
        if total >= count:
            break
        keep = len(batch) if fixed else min(len(batch), count - total)
        taken.append(batch[:keep])
        total += keep
    return taken


def _absolute(predictor: Predictor, layer: str, scales) -> Predictor:
    """The predictor with its margin resolved for ``layer`` (what the model and the window map hold)."""
    return Predictor(predictor.window, predictor.pattern, Margin(predictor.margin.resolve(layer, scales)))


def _faster_kernels(original, layers, config: Configuration, timer: Timer, thread_counts, say,
                    activity) -> Configuration:
    """The layers the search left as onnxruntime's Conv whose own kernel at window 1 (no prediction, so
    the same outputs: bit for bit in int8) takes at most KERNEL_SWAP_RATIO of onnxruntime's time at every
    thread count, kept at window 1 for their speed alone (EfficientNet-Lite0's int8 stem: 0.70x)."""
    faster: Configuration = {}
    for layer in layers:
        if layer.name in config:
            continue
        alone, _ = rewrite_with_summary(original, window=1, layers=[layer.name], channels_last=True,
                                        channel_activity=activity)
        # Both profiles fresh, in turn: a swap rests on this one comparison alone.
        times = {threads: timer.kernel(original, alone, layer, threads, fresh_original=True)
                 for threads in thread_counts}
        ratio = max(t.cost_ratio for t in times.values())
        if ratio <= KERNEL_SWAP_RATIO:
            faster[layer.name] = Measured(layer.name, Predictor(1), kl=0.0, agreement=1.0, predicted_macs=0.0,
                                          skipped_macs=0.0, times=times, label="k=1")
            say(f"{layer.name}: kept at window 1 for its kernel alone, {ratio:.2f}x onnxruntime's time")
    return faster


def _never_slower(original, config: Configuration, objective: str, thread_counts, timer: Timer, say, activity):
    """Times the configuration against the original at every thread count. With objective latency, drops
    the layer that saves least until the tuned model is faster at every thread count (or nothing is left)."""
    dropped: list[str] = []
    while True:
        tuned, _ = rewrite_with_summary(original, layers=list(config), channels_last=True, channel_activity=activity,
                                        window_map={layer: m.predictor.to_json() for layer, m in config.items()})
        timings = [timer.end_to_end(original, tuned, threads) for threads in thread_counts]
        if objective != "latency" or all(t.pays for t in timings):
            return config, timings, dropped
        slowest = min(config.values(), key=lambda m: m.saved_us if m.saved_us is not None else 0.0)
        say(f"tuned model slower than the original ({_timing_text(timings)}): {slowest.layer} left as "
            "onnxruntime's Conv")
        del config[slowest.layer]
        dropped.append(slowest.layer)
        if not config:
            return config, timings, dropped


def _timing_text(timings: Sequence[EndToEnd]) -> str:
    return ", ".join(f"{t.threads} thread{'s' if t.threads > 1 else ''}: {t.tuned_ms:.2f} vs {t.original_ms:.2f} ms"
                     for t in timings)


def _outcome(config, objective, measured, dropped, max_drop, metric, tuning_images, out_of_time,
             say) -> tuple[str, list[str]]:
    """``tuned`` / ``out-of-time`` / ``nothing-pays`` / ``nothing-within-budget`` and what would have to change."""
    if config:
        if objective == "latency":
            paid = sorted(config.values(), key=lambda m: -(m.saved_us or 0.0))
            say("layers that pay: " + ", ".join(f"{m.layer} ({m.label}: {m.saved_us:.0f} µs/image)" for m in paid))
        return "tuned", []
    advice = []
    if out_of_time and not any(measured.values()):
        advice.append("the time budget ended before any candidate was measured: a larger --time-budget")
        say("nothing chosen: " + advice[-1])
        return "out-of-time", advice
    if objective == "latency" and not any((m.saved_us or 0) > 0 for ms in measured.values() for m in ms):
        advice = _latency_advice(measured)
        say("nothing pays: no layer's PredictiveConv is faster than onnxruntime's Conv on this machine")
        for line in advice:
            say("  " + line)
        return "nothing-pays", advice
    if objective == "latency" and dropped:
        advice.append("layers that paid alone did not make the whole model faster end to end: the reorders and "
                      "lost fusions around them cost more than they saved")
        say("nothing pays end to end: " + advice[-1])
        return "nothing-pays", advice
    step = 100.0 / max(tuning_images, 1)
    advice.append(f"no configuration kept the {metric} drop within {max_drop:g} points on the tuning images (one "
                  f"image is {step:.2f} points): a larger budget, more tuning images, or milder candidates (larger "
                  "margins, smaller windows) would be needed")
    if objective == "latency":
        advice += _latency_advice(measured)
    say("nothing within the budget: " + advice[0])
    for line in advice[1:]:
        say("  " + line)
    return "nothing-within-budget", advice


def _latency_advice(measured) -> list[str]:
    """Which candidates pay and what they cost in accuracy; how far the others are from paying."""
    advice = []
    paying = sorted((m for ms in measured.values() for m in ms if (m.saved_us or 0) > 0), key=lambda m: m.kl)
    for m in paying[:3]:
        advice.append(f"{m.layer} pays at {m.label} ({m.saved_us:.0f} µs/image at the slower thread count) but alone "
                      f"it moves the softmax by a KL divergence of {m.kl:.2g} and keeps the top-1 class of "
                      f"{m.agreement:.0%} of the sensitivity images")
    timed = [[m for m in ms if m.times and (m.saved_us or 0) <= 0] for ms in measured.values()]
    closest = sorted((min(ms, key=lambda m: max(t.cost_ratio for t in m.times.values())) for ms in timed if ms),
                     key=lambda m: max(t.cost_ratio for t in m.times.values()))[:3]
    untimed = sum(1 for ms in measured.values() if not any(m.times for m in ms))
    if untimed:
        advice.append(f"{untimed} of {len(measured)} layers: the kernels skip no MACs at any candidate measured "
                      "(they compute the predicted outputs anyway at these shapes), so they cannot be faster")
    for m in closest:
        threads, t = max(m.times.items(), key=lambda item: item[1].cost_ratio)
        advice.append(f"{m.layer}: its fastest setting that does not pay ({m.label}) takes {t.cost_ratio:.2f}× "
                      f"onnxruntime's time for the layer at {threads} thread(s) ({t.predictive_us:.0f} µs + "
                      f"{t.reorder_us:.0f} µs of reorders vs {t.original_us:.0f} µs): the kernel would have to run "
                      f"{t.cost_ratio:.2f}× faster, or skip that much more work, to pay")
    return advice


def _layer_entries(layers, screened, measured, config, dropped, gain, conv_macs) -> list[dict]:
    entries = []
    for layer in layers:
        options = measured.get(layer.name, [])
        chosen = config.get(layer.name)
        entries.append({
            "name": layer.name,
            "choice": chosen.label if chosen else "onnxruntime Conv",
            "predictor": chosen.predictor.to_json() if chosen else None,
            "dropped_for_time": layer.name in dropped,
            "sensitivity_kl": chosen.kl if chosen else None,
            "most_gain_kl": max(options, key=gain).kl if options else None,
            "predicted_macs": chosen.predicted_macs if chosen else 0.0,
            "skipped_macs": chosen.skipped_macs if chosen else 0.0,
            "saved_us": chosen.saved_us if chosen else None,
            "candidates": [m.to_json() for m in options],
            "screened": [{"setting": str(s.predictor), "predicted_share": s.predicted_share,
                          "energy_lost": s.energy_lost} for s in (screened or {}).get(layer.name, [])],
        })
    return entries


@dataclass(frozen=True)
class Written:
    model: Optional[Path]
    window_map: Optional[Path]
    report: Path
    rewrite_command: Optional[str]


def output_paths(model_path: Path, output: Optional[Path]) -> tuple[Path, Path, Path]:
    """(tuned model, window map, report folder): ``-o`` or ``<stem>.tuned.onnx``, and beside it
    ``<its stem>.windows.json`` and ``<its stem>.tune/``."""
    output = output or model_path.with_name(f"{model_path.stem}.tuned.onnx")
    return output, output.with_name(f"{output.stem}.windows.json"), output.with_name(f"{output.stem}.tune")


def write_outputs(result: TuneResult, model_path: Path, output: Optional[Path] = None, *,
                  data: Optional[PathLike] = None, write_model: bool = True, write_unchanged: bool = False,
                  report_dir: Optional[Path] = None) -> Written:
    """The report always; the tuned model (validated like ``onnxpred rewrite``'s: every window 1 reproduces the
    original) and its window map when ``write_model`` and something was chosen; the original itself with
    ``write_unchanged`` when nothing was."""
    import json

    from ..model_io import check_output_path, model_files, needs_external_data, staged_output
    from ..model_io import write_model as write_model_file
    from ..model_io import write_text
    from ..validation import validate
    from .report import write_report

    model_out, map_out, report_out = output_paths(model_path, output)
    report_out = report_dir or report_out
    inputs = model_files(model_path)
    written_model = written_map = command = None
    model = result.model if result.model is not None else (load_model(model_path) if write_unchanged else None)
    if write_model and model is not None:
        check_output_path(model_out, inputs)
        check_output_path(map_out, inputs)
        external = needs_external_data(model, inputs)
        with staged_output(model_out) as staged:
            write_model_file(model, staged, external_data=external)
            if result.model is not None:
                validate(model_path, staged, data=data, max_images=8)
        written_model = model_out
        if result.model is not None:
            write_text(map_out, json.dumps(result.window_map, indent=2) + "\n")
            written_map = map_out
            command = (f"onnxpred rewrite {model_path} --window-map {map_out} --layers "
                       f"{','.join(result.window_map)} -o OUT.onnx")
            if result.content.get("channels_ordered"):  # ordered on all the data's images: the same outputs
                command += " --order-channels" + (f" --data {data}" if data is not None else "")
    result.content["written"] = {"model": str(written_model) if written_model else None,
                                 "window_map": str(written_map) if written_map else None,
                                 "rewrite_command": command}
    write_report(result.content, report_out)
    return Written(written_model, written_map, report_out, command)
