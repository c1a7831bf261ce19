"""``report.md`` and ``report.html`` from the numbers of ``report.json``.

The document is built once as a list of blocks (headings, paragraphs, tables, figures); Markdown and
HTML are two renderings of it, so the two files cannot drift apart. Figures exist only in HTML, as
inline SVG: the page fetches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Optional, Sequence, Union

from .charts import Series, TradeoffPoint, bar_chart, points_chart, tradeoff_chart

# (key, label, colour): hits green, misses (prediction errors) red, computed outputs blue and grey.
OUTCOMES = (("pred_hit", "pred-hit", "#59a14f"), ("pred_miss", "pred-miss", "#e15759"),
            ("zero_diag", "zero-diag", "#4e79a7"), ("others", "others", "#bab0ac"))


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric_from: int = 1  # columns from here on are right-aligned


@dataclass(frozen=True)
class Figure:
    svg: str
    caption: str


@dataclass(frozen=True)
class Details:
    """A collapsible group in HTML (open when ``open``), a sub-section in Markdown."""

    summary: str
    blocks: Sequence["Block"] = field(default_factory=list)
    open: bool = False


Block = Union[Heading, Paragraph, Table, Figure, Details]


def percent(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def _with_ci(value: Optional[float], interval: Sequence[float]) -> str:
    if value is None:
        return "n/a"
    return f"{percent(value)} [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]"


def _macs(count: int) -> str:
    return f"{count / 1e6:,.1f} M"


def _window_label(window: int) -> str:
    return f"k={window}"


def document(report: dict) -> list[Block]:
    """The report's content, in reading order."""
    title = f"onnxpred report: {report['model_name'] or report['model']}"
    blocks: list[Block] = [Heading(title, 1), *_setup_section(report)]
    if report["results"]:
        blocks += _accuracy_section(report) + _outcome_section(report) + _layer_section(report)
    if report["spatial_correlation"]:
        blocks += _spatial_section(report["spatial_correlation"])
    blocks += _method_section(report)
    return blocks


def _setup_section(report: dict) -> list[Block]:
    spec = report["preprocessing"]
    labelled = report["labelled_images"]
    images = f"{report['images']} images ({labelled} labelled)" if labelled != report["images"] else \
        f"{report['images']} labelled images"
    preprocessing = (f"resize the short side to {spec['resize']} px ({spec['interpolation']}), centre-crop "
                     f"{spec['crop']}×{spec['crop']}, {spec['color']}, (x / {spec['scale']:g} − mean) / std with "
                     f"mean {_triple(spec['mean'])}, std {_triple(spec['std'])}")
    if spec["assumed"]:
        preprocessing += (" — ASSUMED: the model records no preprocessing, so torchvision's ImageNet transform "
                          "was used; accuracies are meaningless if the model expects another")
    blocks: list[Block] = [
        Paragraph(f"Model: {report['model']}. Data: {report['data']}, {images} (listed in report.json)."),
        Paragraph(f"Preprocessing: {preprocessing}."),
    ]
    if report["data_note"]:
        blocks.append(Paragraph(f"Note: {report['data_note']}"))
    if report.get("skipped_images"):
        skipped = report["skipped_images"]
        listed = ", ".join(entry["file"] for entry in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        blocks.append(Paragraph(f"Skipped: {len(skipped)} unreadable images, left out of every number "
                                f"({listed}; all with their errors in report.json)."))
    blocks.append(Paragraph(
        f"Run: {report['run_time_s']:.0f} s in total on {report['threads'] or 'default'} onnxruntime threads "
        f"(onnxruntime {report['onnxruntime_version']}, onnxpred {report['onnxpred_version']}), "
        f"{report['created']}."))
    return blocks


def _triple(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def _accuracy_section(report: dict) -> list[Block]:
    original, results = report["original"], report["results"]
    rows = [["original", _with_ci(original["top1"], original["top1_ci95"]),
             _with_ci(original["top5"], original["top5_ci95"]), "—", "—", "—", "—",
             f"{original['run_time_s']:.1f}"]]
    for result in results:
        rows.append([
            result["label"],
            _with_ci(result["top1"], result["top1_ci95"]),
            _with_ci(result["top5"], result["top5_ci95"]),
            _with_ci(result["agreement"], result["agreement_ci95"]),
            percent(result["mac_savings"]),
            percent(result["mac_savings_all_conv"]),
            percent(result["mac_savings_ideal"]),
            f"{result['run_time_s']:.1f}",
        ])
    categories = ["original"] + [r["label"] for r in results]
    accuracy_series = []
    for key, name in (("top1", "top-1"), ("top5", "top-5"), ("agreement", "top-1 agreement")):
        entries = ([original] if key != "agreement" else [None]) + list(results)
        accuracy_series.append(Series(
            name,
            [None if entry is None else entry[key] for entry in entries],
            low=[None if entry is None else entry[f"{key}_ci95"][0] for entry in entries],
            high=[None if entry is None else entry[f"{key}_ci95"][1] for entry in entries],
        ))
    window_categories = [r["label"] for r in results]
    savings = [Series("rewritten layers", [r["mac_savings"] for r in results]),
               Series("all Conv layers", [r["mac_savings_all_conv"] for r in results]),
               Series("MACs of predicted outputs", [r["mac_savings_ideal"] for r in results])]
    return [
        Heading("Accuracy and MAC savings per configuration"),
        Paragraph("Top-1/top-5 against the labels and top-1 agreement with the original model (Figure 7 of the "
                  "paper), with 95% Wilson confidence intervals; MAC savings = 1 − executed / dense MACs (Figure 6) "
                  "over two denominators: the dense MACs of the rewritten layers, and of all Conv layers of the "
                  "model. These count the MACs the kernel executed; where it computes predicted outputs anyway (a "
                  "dense path for small layers) it saves less than the prediction allows, which the last savings "
                  "column shows: the MACs of the predicted outputs over the rewritten layers' dense MACs. Run time "
                  "is onnxruntime's time over all images, with audit = 1 (the predicted outputs are computed as "
                  "well, to count hits), so it is not a speed measurement."),
        Table(["model", "top-1 [95% CI]", "top-5 [95% CI]", "top-1 agreement [95% CI]",
               "MAC savings (rewritten layers)", "MAC savings (all Conv)",
               "MACs of predicted outputs (rewritten layers)",
               "run time (s)"], rows),
        Figure(points_chart("Accuracy per configuration", categories, accuracy_series,
                            x_label="model", y_label="share of images"),
               "Accuracy and agreement with 95% confidence intervals (Figure 7)."),
        Figure(bar_chart("MAC savings per configuration", window_categories, savings,
                         x_label="configuration", y_label="MACs saved"),
               "MAC savings over the rewritten layers and over all Conv layers (Figure 6, total), and the share of "
               "the rewritten layers' MACs that belongs to predicted outputs."),
        *_tradeoff_figures(report),
    ]


def _tradeoff_figures(report: dict) -> list[Block]:
    """Top-1 and agreement against MAC savings over all Conv layers: the picture to choose from."""
    results = [r for r in report["results"] if r["mac_savings_ideal_all_conv"] is not None]
    if not results:
        return []
    blocks: list[Block] = []
    for key, name, reference in (("top1", "top-1", report["original"]["top1"]), ("agreement", "top-1 agreement", 1.0)):
        if reference is None:
            continue  # no labels: no top-1
        points = [TradeoffPoint(r["label"], r["mac_savings_ideal_all_conv"], r[key], *r[f"{key}_ci95"],
                                x_alt=r["mac_savings_all_conv"], group=f"{r['pattern']}, margin {r['margin']}")
                  for r in results if r[key] is not None]
        svg = tradeoff_chart(points, title=f"{name} against MAC savings", y_label=name, reference_y=reference,
                             x_label="MACs saved, of all Conv layers' MACs")
        blocks.append(Figure(svg, f"{name} (95% CI) against the MACs of the predicted outputs over all Conv layers' "
                                  "dense MACs (filled) and the MACs the kernels actually skipped (hollow); the line "
                                  "joins the configurations no other one beats on both axes."))
    return blocks


def _outcome_series(entries: Sequence[dict]) -> list[Series]:
    return [Series(label, [entry["outcomes"][key] for entry in entries], color=color) for key, label, color in OUTCOMES]


def _outcome_section(report: dict) -> list[Block]:
    results = report["results"]
    rows = [[r["label"], *(percent(r["outcomes"][key], 2) for key, _, _ in OUTCOMES),
             f"{r['counters']['outputs']:,}"] for r in results]
    return [
        Heading("Prediction outcomes"),
        Paragraph("Share of all outputs of the rewritten layers (Figure 5): pred-hit = predicted zero and truly zero; "
                  "pred-miss = predicted zero but truly non-zero (the error prediction makes); zero-diag = "
                  "the computed samples (the diagonal, or the pattern's) of windows whose samples were all at most "
                  "−margin, which triggered the prediction; others = every other computed output. From the op's own counters, summed over images."),
        Table(["configuration", *(label for _, label, _ in OUTCOMES), "outputs"], rows),
        Figure(bar_chart("Prediction outcomes per configuration", [r["label"] for r in results],
                         _outcome_series(results), x_label="configuration", y_label="share of outputs", stacked=True),
               "Prediction outcomes over all rewritten layers (Figure 5, total)."),
    ]


def _layer_section(report: dict) -> list[Block]:
    results = report["results"]
    names = [layer["name"] for layer in results[0]["layers"]]
    indices = [str(number) for number in range(1, len(names) + 1)]
    tooltips = [f"{number} {name}" for number, name in zip(indices, names)]
    savings_rows = [
        [number, name, _macs(results[0]["layers"][i]["counters"]["macs_dense"] // max(1, report["images"])),
         *(f'{percent(r["layers"][i]["mac_savings"])} ({percent(r["layers"][i]["mac_savings_ideal"])})'
           for r in results)]
        for i, (number, name) in enumerate(zip(indices, names))
    ]
    savings_chart = bar_chart(
        "MAC savings per layer", indices,
        [Series(r["label"], [layer["mac_savings"] for layer in r["layers"]]) for r in results],
        x_label="layer", y_label="MACs saved", tooltips=tooltips)
    blocks: list[Block] = [
        Heading("Per layer"),
        Paragraph("Layers are numbered in graph order; the table names them. MAC savings per layer = 1 − executed / "
                  "dense MACs of that layer (Figure 6); in brackets the share of its MACs that belongs to predicted "
                  "outputs, which a kernel skipping exactly those would save."),
        Figure(savings_chart, "MAC savings per layer and configuration (Figure 6)."),
        Table(["#", "layer", "dense MACs / image",
               *(f"{r['label']}: saved (predicted)" for r in results)],
              savings_rows, numeric_from=2),
    ]
    first_predicting = next((r["label"] for r in results if r["window"] > 1), None)
    for result in results:
        layers = result["layers"]
        rows = [[number, layer["name"], *(percent(layer["outcomes"][key], 2) for key, _, _ in OUTCOMES)]
                for number, layer in zip(indices, layers)]
        blocks.append(Details(f"Prediction outcomes per layer, {result['label']}", [
            Figure(bar_chart(f"Prediction outcomes per layer, {result['label']}", indices,
                             _outcome_series(layers), x_label="layer", y_label="share of outputs", stacked=True,
                             tooltips=tooltips),
                   f"Prediction outcomes per layer at {result['label']} (Figure 5)."),
            Table(["#", "layer", *(label for _, label, _ in OUTCOMES)], rows, numeric_from=2),
        ], open=result["label"] == first_predicting))
    return blocks


def _spatial_section(spatial: dict) -> list[Block]:
    windows, layers = spatial["windows"], spatial["layers"]
    indices = [str(number) for number in range(1, len(layers) + 1)]
    rows = [[number, layer["name"], "×".join(map(str, layer["shape"])),
             *(percent(fraction) for fraction in layer["all_zero_fraction"])]
            for number, layer in zip(indices, layers)]
    rows.append(["", "mean over layers", "", *(percent(f) for f in spatial["mean"])])
    series = [Series(_window_label(window), [layer["all_zero_fraction"][i] for layer in layers] + [spatial["mean"][i]])
              for i, window in enumerate(windows)]
    return [
        Heading("Spatial correlation of zero activations"),
        Paragraph("Share of k×k windows (stride 1, per channel, wholly inside the plane) of each rewritten layer's "
                  "activation output, in the original model, whose values are all exactly zero (Figure 2 of the "
                  "paper); k=1 is the share of zero activations. The mean is the unweighted mean over layers."),
        Figure(bar_chart("All-zero windows per layer", indices + ["mean"], series, x_label="layer",
                         y_label="all-zero windows", tooltips=[f"{i} {layer['name']}" for i, layer in
                                                               zip(indices, layers)] + ["mean over layers"]),
               "Share of all-zero windows per layer and window size (Figure 2)."),
        Table(["#", "layer", "C×H×W", *(f"all zero, {_window_label(w)}" for w in windows)], rows, numeric_from=2),
    ]


def _method_section(report: dict) -> list[Block]:
    macs = report["macs_per_image"]
    blocks: list[Block] = [
        Heading("Method"),
        Paragraph("Every eligible Conv→Relu/Clip (and Conv→Add→Relu/Clip) of the model is replaced by a "
                  "PredictiveConv with the given window k (k=1: no prediction), sampling pattern and margin "
                  "(configurations are labelled k=3 for the paper's diagonal at margin 0, else with the pattern and "
                  "m=margin). Each configuration is one rewritten model run with audit = 1 and its counters exposed; "
                  "counters are summed over images and layers."),
    ]
    if report.get("preactivation_sd"):
        blocks.append(Paragraph(
            "Margins in sd are multiples of each layer's pre-activation standard deviation, measured on the first "
            f"{report['preactivation_sd_images']} images of the data (report.json lists them per layer)."))
    if macs["all_conv"]:
        blocks.append(Paragraph(
            f"Denominators per image: rewritten layers {_macs(macs['rewritten_layers'])} MACs; all Conv layers "
            f"{_macs(macs['all_conv'])} MACs ({percent(macs['rewritten_layers'] / macs['all_conv'])} of it "
            "rewritten). Savings over all Conv layers count only what the rewritten layers save."))
    else:
        blocks.append(Paragraph(
            f"Denominators per image: rewritten layers {_macs(macs['rewritten_layers'])} MACs; the MACs of all Conv "
            "layers are unknown (a Conv has dynamic shapes), so no savings over them are given."))
    if report["not_rewritten"]:
        rows = [[entry["name"], entry["op_type"], entry["reason"]] for entry in report["not_rewritten"]]
        blocks += [Paragraph("Layers left as they are:"), Table(["layer", "op", "reason"], rows, numeric_from=3)]
    return blocks


# --- Markdown ---------------------------------------------------------------------------------------------

def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(blocks: Sequence[Block], depth: int = 0) -> list[str]:
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * (block.level + depth) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            alignment = [":--" if i < block.numeric_from else "--:" for i in range(len(block.header))]
            lines += ["| " + " | ".join(map(_markdown_cell, block.header)) + " |", "| " + " | ".join(alignment) + " |"]
            lines += ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Details):
            lines += [f"### {block.summary}", ""] + _markdown(block.blocks, depth)
        # Figures are HTML only.
    return lines


def markdown_page(blocks: Sequence[Block]) -> str:
    """A document (its first block the title) as Markdown, pointing at its HTML and JSON twins."""
    note = Paragraph("Charts: report.html in this folder. All numbers: report.json.")
    return "\n".join(_markdown([blocks[0], note, *blocks[1:]])).rstrip() + "\n"


def to_markdown(report: dict) -> str:
    return markdown_page(document(report))


# --- HTML -------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
svg { max-width: 100%; height: auto; }
"""


def _html(blocks: Sequence[Block]) -> list[str]:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            header = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
            body = "".join(
                "<tr>" + "".join(f'<td{" class=num" if i >= block.numeric_from else ""}>{escape(cell)}</td>'
                                 for i, cell in enumerate(row)) + "</tr>"
                for row in block.rows)
            parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            parts.append(f"<figure>{block.svg}<figcaption>{escape(block.caption)}</figcaption></figure>")
        elif isinstance(block, Details):
            parts.append(f"<details{' open' if block.open else ''}><summary>{escape(block.summary)}</summary>"
                         + "".join(_html(block.blocks)) + "</details>")
    return parts


def html_page(blocks: Sequence[Block]) -> str:
    """A document (its first block the title) as one self-contained HTML page."""
    title = blocks[0].text if isinstance(blocks[0], Heading) else "onnxpred report"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(_html(blocks)) + "\n</body></html>\n")


def to_html(report: dict) -> str:
    return html_page(document(report))
