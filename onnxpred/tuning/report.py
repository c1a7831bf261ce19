"""The tuning report: ``report.json`` (every number of :func:`onnxpred.tune`), ``report.md`` and
``report.html``, rendered from one list of blocks like ``onnxpred report``'s (:mod:`onnxpred.evaluation.render`).

Accuracies reported as results are the confirmation part's, which the search never saw; the chart of
the search shows the tuning part's figures of every configuration tried, labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import OutputError
from ..evaluation.charts import TradeoffPoint, tradeoff_chart
from ..evaluation.render import (Block, Details, Figure, Heading, Paragraph, Table, html_page, markdown_page,
                                 percent)
from ..evaluation.stats import wilson_interval
from ..model_io import write_text


def _ci(entry: Optional[dict]) -> str:
    if not entry or entry["value"] is None:
        return "n/a"
    low, high = entry["ci95"]
    return f"{percent(entry['value'])} [{low * 100:.1f}, {high * 100:.1f}] ({entry['hits']}/{entry['trials']})"


def _macs(count: Optional[float]) -> str:
    return "—" if count is None else f"{count / 1e6:,.2f} M"


def _metric_name(metric: str) -> str:
    return "top-1" if metric == "top1" else "top-1 agreement"


def document(content: dict) -> list[Block]:
    metric, objective = content["metric"], content["objective"]
    title = f"onnxpred tune: {content['model_name'] or content['model']}"
    split = content["split"]
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(f"Model: {content['model']}. Data: {content['data']}, {content['images']} images, split "
                  f"deterministically into {len(split['tuning'])} tuning and {len(split['confirmation'])} "
                  f"confirmation images (seed {split['seed']}; both lists in report.json). The search saw only the "
                  "tuning images; the results below are the confirmation images'."),
        Paragraph(f"Goal: the drop of {_metric_name(metric)} against the original at most "
                  f"{content['max_drop_points']:g} point(s)"
                  + (f", savings of at least {percent(content['min_savings'])} of all Conv MACs"
                     if content["min_savings"] is not None else "")
                  + f"; objective {objective} ("
                  + {"macs": "MACs of the predicted outputs", "executed": "MACs the kernels skip",
                     "latency": "time in onnxruntime on this machine, never slower than the original"}[objective]
                  + f"). Run: {content['run_time_s']:.0f} s of a {content['time_budget_s'] / 60:.0f}-minute budget "
                  f"({', '.join(f'{name} {seconds:.0f} s' for name, seconds in content['stages_s'].items())})."),
    ]
    if content["data_note"]:
        blocks.append(Paragraph(f"Note: {content['data_note']}"))
    blocks += _outcome_section(content) + _confirmation_section(content) + _layer_section(content)
    blocks += _search_section(content) + _method_section(content)
    return blocks


def _outcome_section(content: dict) -> list[Block]:
    outcome = content["outcome"]
    layers = [entry for entry in content["layers"] if entry["predictor"] is not None]
    if outcome == "tuned":
        left = len(content["layers"]) - len(layers)
        text = f"{len(layers)} of {len(content['layers'])} eligible layers predict" + \
            ("." if not left else f"; {'the other stays' if left == 1 else 'the others stay'} onnxruntime's Conv.")
    elif outcome == "out-of-time":
        text = "The time budget ended before anything could be chosen: no tuned model was written."
    elif outcome == "nothing-pays":
        text = "Nothing pays: no tuned model was written (the original is the answer on this machine)."
    else:
        text = "No configuration keeps the budget: no tuned model was written."
    if not content["goal_met"]:
        text += " GOAL NOT MET — the configuration written is the best effort found: " + \
                "; ".join(content["goal_not_met_because"]) + "."
    if content["cut_short_by_time_budget"]:
        text += " The time budget cut the measurements or the search short; a larger one may find more."
    blocks: list[Block] = [Heading("Outcome"), Paragraph(text)]
    for line in content["advice"]:
        blocks.append(Paragraph(f"What would have to change: {line}."))
    return blocks


def _fp32_drop_text(confirmation: dict) -> str:
    drop = confirmation.get("top1_drop_vs_fp32_points")
    return "" if drop is None else f" (top-1 against the float model: {drop:.2f} points)"


def _confirmation_section(content: dict) -> list[Block]:
    confirmation = content["confirmation"]
    blocks: list[Block] = []
    if confirmation is not None:
        original, tuned = confirmation["original"], confirmation["tuned"]
        rows = [["original", _ci(original["top1"]), "100%", "—", "—"],
                ["tuned", _ci(tuned["top1"]), _ci(tuned["agreement"]),
                 percent(confirmation["predicted_share_all_conv"]), percent(confirmation["skipped_share_all_conv"])]]
        fp32 = confirmation.get("fp32")
        if fp32 is not None:
            rows.insert(0, ["float model (before quantization)", _ci(fp32["top1"]), "—", "—", "—"])
        blocks += [
            Heading("Confirmation (images the search never saw)"),
            Paragraph(f"{tuned['images']} images; 95% Wilson intervals. Drop of {_metric_name(content['metric'])}: "
                      f"{confirmation['drop_points']:.2f} points{_fp32_drop_text(confirmation)}. MACs are shares of "
                      "all Conv layers' dense MACs: of the predicted outputs, and the ones the kernels actually "
                      "skipped (they compute some predicted outputs anyway where skipping would be slower)."),
            Table(["model", "top-1 [95% CI]", "top-1 agreement [95% CI]", "MACs predicted", "MACs skipped"], rows),
        ]
    if content["end_to_end"]:
        rows = [[str(t["threads"]), f"{t['original_ms']:.2f}", f"{t['tuned_ms']:.2f}", f"{t['speedup']:.3f}×"]
                for t in content["end_to_end"]]
        blocks += [Paragraph("End to end in onnxruntime on this machine, per image (median of runs in turn with the "
                             "original, on tuning images):"),
                   Table(["threads", "original (ms)", "tuned (ms)", "speed-up"], rows)]
    return blocks


def _layer_section(content: dict) -> list[Block]:
    rows = []
    for number, entry in enumerate(content["layers"], start=1):
        saved = entry["saved_us"]
        rows.append([str(number), entry["name"], entry["choice"] + (" (dropped: slower)" if entry["dropped_for_time"]
                                                                     else ""),
                     "—" if entry["sensitivity_kl"] is None else f"{entry['sensitivity_kl']:.2e}",
                     "—" if entry["most_gain_kl"] is None else f"{entry['most_gain_kl']:.2e}",
                     _macs(entry["predicted_macs"] if entry["predictor"] else None),
                     _macs(entry["skipped_macs"] if entry["predictor"] else None),
                     "—" if saved is None else f"{saved:.0f}"])
    return [
        Heading("Per layer"),
        Paragraph("Choice: the layer's predictor (k = window, pattern, margin; sd = the layer's pre-activation "
                  "standard deviation) or onnxruntime's Conv. Sensitivity: mean KL divergence of the model's softmax "
                  "from the original's with only this layer predicted, on the sensitivity images; beside it the KL "
                  "of the layer's most aggressive candidate measured. MACs per image of the predicted outputs and "
                  "skipped by the kernels, and the time the layer's prediction saves per image (profiler, worst "
                  "thread count, reorders charged to the layer; objective latency only)."),
        Table(["#", "layer", "choice", "sensitivity (KL)", "KL, most aggressive", "MACs predicted / image",
               "MACs skipped / image", "time saved (µs)"], rows, numeric_from=3),
    ]


def _search_section(content: dict) -> list[Block]:
    tuning = content["tuning"]
    configurations = tuning["configurations"]
    if not configurations:
        return []
    metric = content["metric"]
    key = "top1" if metric == "top1" else "agreement"
    trials_key = "labelled" if metric == "top1" else "images"
    hits_key = "top1_hits" if metric == "top1" else "agreement_hits"
    points = []
    for entry in configurations:
        if entry["predicted_share_all_conv"] is None or entry[key] is None:
            continue
        low, high = wilson_interval(entry[hits_key], entry[trials_key])
        points.append(TradeoffPoint(f"{entry['label']} ({entry['layers']} layers)", entry["predicted_share_all_conv"],
                                    entry[key], low, high, x_alt=entry["skipped_share_all_conv"],
                                    highlight=entry["chosen"], group="tried on the tuning images"))
    confirmation = content["confirmation"]
    if confirmation is not None and confirmation["predicted_share_all_conv"] is not None:
        figure = confirmation["tuned"]["top1" if metric == "top1" else "agreement"]
        if figure is not None:
            points.append(TradeoffPoint("chosen, on the confirmation images", confirmation["predicted_share_all_conv"],
                                        figure["value"], *figure["ci95"], x_alt=confirmation["skipped_share_all_conv"],
                                        highlight=True, group="chosen, confirmation images"))
    original = tuning["original"]
    reference = original["top1"]["value"] if metric == "top1" and original["top1"] else 1.0
    blocks: list[Block] = [Heading("Search")]
    if points:
        svg = tradeoff_chart(points, title=f"{_metric_name(metric)} against MACs predicted", x_label="MACs predicted, "
                             "of all Conv layers' MACs", y_label=_metric_name(metric), reference_y=reference,
                             reference_label="original (tuning images)")
        blocks.append(Figure(svg, "Every configuration run on the tuning images (95% CI; filled: MACs of the predicted "
                                  "outputs, hollow: MACs the kernels skipped), the chosen one ringed, and the chosen "
                                  "one again on the confirmation images. Tuning figures guided the search and are "
                                  "optimistic; the confirmation point is the result."))
    rows = [[entry["label"], str(entry["layers"]), percent(entry["predicted_share_all_conv"]),
             percent(entry["skipped_share_all_conv"]), percent(entry[key]),
             f"{entry['drop_points']:.2f} ± {entry['noise_points']:.2f}", f"{entry['kl']:.3g}",
             f"{entry['estimated_drop_points']:.2f} ± {entry['estimate_noise_points']:.2f}",
             "yes" if entry["feasible"] else "no", "chosen" if entry["chosen"] else ""] for entry in configurations]
    blocks.append(Paragraph(_drop_model_text(tuning["drop_model"], metric)))
    blocks.append(Details("Configurations tried on the tuning images", [
        Table(["configuration", "layers", "MACs predicted", "MACs skipped", f"{_metric_name(metric)} (tuning)",
               "drop ± SE (points)", "KL", "estimated drop ± SE", "within budget", ""], rows)]))
    return blocks


def _drop_model_text(model: dict, metric: str) -> str:
    if model["points_per_kl"] is None:
        return ("No run near the budget lowered the metric, so there was no drop to calibrate the KL divergence "
                "with: each run was judged by its own count plus half its standard error.")
    return (f"Each configuration was judged by the drop its KL divergence predicts: {model['points_per_kl']:.1f} "
            f"points of {_metric_name(metric)} per unit of KL, pooled over the {model['runs']} runs with a KL up to "
            f"{model['reach_kl']:.3g} ({model['changed_images']} changed images), plus half that estimate's "
            "standard error; a single run's count is noisier than the proportion over all of them.")


def _method_section(content: dict) -> list[Block]:
    space = content["search_space"]
    return [
        Heading("Method"),
        Paragraph(f"Candidates per layer: windows {', '.join(map(str, space['windows']))}; patterns "
                  f"{', '.join(space['patterns'])}; margins {', '.join(space['margins'])}; or onnxruntime's Conv. "
                  f"Screening: {content['screening']}. Sensitivity: each kept candidate measured in the whole model "
                  f"with only its layer predicted, on {content['sensitivity_images']} tuning images. Search: for a "
                  "price λ each layer takes the candidate of largest gain − λ · KL; the configurations along λ ran "
                  "on all tuning images, narrowing on the last that keeps the budget as judged by the drop its "
                  "whole-model KL divergence predicts (drop ≈ β · KL, β pooled over the runs near the budget), "
                  "plus half that estimate's standard error: one run's own count of a few changed images is "
                  "noisy, and the search would favour the runs whose count happened to be low. The window map "
                  "beside the model holds the chosen settings with absolute margins (onnxpred rewrite --window-map)."),
    ]


def to_markdown(content: dict) -> str:
    return markdown_page(document(content))


def to_html(content: dict) -> str:
    return html_page(document(content))


def write_report(content: dict, out_dir: Path) -> None:
    """``report.json``, ``report.md`` and ``report.html`` in ``out_dir`` (created if missing)."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the report folder {folder}: {error.strerror or error}") from None
    write_text(folder / "report.json", json.dumps(content, indent=2) + "\n")
    write_text(folder / "report.md", to_markdown(content))
    write_text(folder / "report.html", to_html(content))
