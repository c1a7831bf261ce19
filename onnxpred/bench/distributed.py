"""What spreading a report over Ray costs and gains on this machine (a measurement, never a test).

``python3 -m onnxpred.bench.distributed MODEL --data DIR [-k 1,2,3,4,5] [--limit N] [--repeats R]`` runs
the same report in three ways, each with sessions of 1 intra-op thread: in-process, on a local Ray
instance with 1 worker, and with 2 workers; R rounds of the three, of which each way's fastest counts
(other work on the machine only ever slows a run down). It prints each evaluation pass's time and
images per second, the distribution's overhead (1 Ray worker against in-process), the speed-up of 2
workers over 1, the load average around the runs, and whether all reports hold the same numbers. The
Ray instance is started once, before the runs; its start-up is printed apart. ``--ways`` runs some of the
three only (to fit the quiet moments of a shared machine); the JSON's ``numbers_sha256`` lets reports of
separate invocations be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from ..commands.report import window_list
from ..evaluation import report
from ..evaluation.distributed import RayOptions, import_ray

# What differs between two runs of the same report: times, creation date, how the work was spread.
RUN_KEYS = ("run_time_s", "evaluation_time_s", "created", "distribution")


def report_numbers(content):
    """``report.json`` without :data:`RUN_KEYS`, at any depth: what must be identical between runs."""
    if isinstance(content, dict):
        return {key: report_numbers(value) for key, value in content.items() if key not in RUN_KEYS}
    if isinstance(content, list):
        return [report_numbers(value) for value in content]
    return content


WAYS = {"in-process": "in-process", "1": "ray, 1 worker", "2": "ray, 2 workers"}


def _ways(parser, text: str) -> list:
    ways = [way.strip() for way in text.split(",") if way.strip()]
    unknown = [way for way in ways if way not in WAYS]
    if unknown or not ways:
        parser.error(f"--ways takes some of {','.join(WAYS)}, got {text!r}")
    return [(way, None if way == "in-process" else RayOptions(workers=int(way))) for way in ways]


def _ratio(seconds: dict, numerator: str, denominator: str, offset: float = 0):
    if numerator in seconds and denominator in seconds:
        return seconds[numerator] / seconds[denominator] + offset
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m onnxpred.bench.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, help="dataset folder (default: foolbox's 20 images)")
    parser.add_argument("-k", "--windows", type=window_list, default=window_list("1,2,3,4,5"))
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three runs (default 1)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"which runs (default {','.join(WAYS)})")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)

    runs = {WAYS[way]: options for way, options in _ways(parser, args.ways)}
    ray = import_ray()
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_start_s = time.perf_counter() - start
    contents = {name: [] for name in runs}
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for round_index in range(args.repeats):
                for index, (name, options) in enumerate(runs.items()):
                    contents[name].append(report(
                        args.model, args.data, args.windows, out_dir=Path(scratch) / f"{round_index}-{index}",
                        limit=args.limit, batch_size=args.batch_size, threads=1, ray=options))
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    images = next(iter(contents.values()))[0]["images"]
    all_seconds = {name: [content["evaluation_time_s"] for content in runs_of] for name, runs_of in contents.items()}
    seconds = {name: min(values) for name, values in all_seconds.items()}
    numbers = [report_numbers(content) for runs_of in contents.values() for content in runs_of]
    results = {
        "model": str(args.model), "images": images, "windows": args.windows, "ray_start_s": ray_start_s,
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "evaluation_s_each_run": all_seconds, "evaluation_s": seconds,
        "images_per_s": {name: images / value for name, value in seconds.items()},
        "overhead_1_worker": _ratio(seconds, "ray, 1 worker", "in-process", -1),
        "speedup_2_workers": _ratio(seconds, "ray, 1 worker", "ray, 2 workers"),
        "identical_numbers": all(other == numbers[0] for other in numbers[1:]),
        "numbers_sha256": hashlib.sha256(json.dumps(numbers[0], sort_keys=True).encode()).hexdigest(),
    }
    print(f"{images} images, k = {','.join(map(str, args.windows))}, sessions of 1 intra-op thread; "
          f"Ray instance started in {ray_start_s:.1f} s (not counted below); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs")
    for name, value in seconds.items():
        each = ", ".join(f"{run:.1f}" for run in all_seconds[name])
        print(f"  {name:<15} {value:7.1f} s  {images / value:6.2f} images/s  (fastest of {each} s)")
    if results["overhead_1_worker"] is not None:
        print(f"overhead of 1 Ray worker over in-process: {100 * results['overhead_1_worker']:+.1f}% "
              f"(actor start and its sessions included)")
    if results["speedup_2_workers"] is not None:
        print(f"2 workers over 1: {results['speedup_2_workers']:.2f}x")
    print(f"identical report numbers in all {len(numbers)} runs: {results['identical_numbers']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if results["identical_numbers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
