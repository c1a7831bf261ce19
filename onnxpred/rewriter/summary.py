"""What a rewrite did: the layers it replaced, the ones it left alone and why, and MAC totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .graph import shape_text
from .selection import Predictor


@dataclass(frozen=True)
class LayerRewrite:
    name: str                       # the layer (Conv) name, now the PredictiveConv's name
    pattern: str                    # "Conv->Add->Relu"
    input_shape: Optional[tuple]    # X
    output_shape: Optional[tuple]   # Y
    macs: Optional[int]             # dense MACs of one image; None when a shape is unknown
    predictor: Predictor            # as chosen (a margin may be in sd units)
    margin: float                   # the absolute margin written into the node

    @property
    def window(self) -> int:
        return self.predictor.window

    @property
    def margin_text(self) -> str:
        """``0.35``, or ``0.5sd = 0.213`` for a margin resolved from the layer's standard deviation."""
        return f"{self.predictor.margin} = {self.margin:.3g}" if self.predictor.margin.in_sd else f"{self.margin:g}"


@dataclass(frozen=True)
class LeftAlone:
    name: str
    op_type: str
    reason: str
    macs: Optional[int]


@dataclass
class RewriteSummary:
    rewritten: list[LayerRewrite]
    left_alone: list[LeftAlone]
    # The other passes' edits by kind ("BatchNormalization folded": [one line per edit]): the pre-passes
    # and, when asked for, the channels-last layout after the fusion.
    prepasses: dict[str, list[str]] = field(default_factory=dict)

    @property
    def layers_rewritten(self) -> int:
        return len(self.rewritten)

    @property
    def layers_left(self) -> int:
        return len(self.left_alone)

    @property
    def rewritten_macs(self) -> int:
        """Dense MACs per image of the rewritten layers (the ones prediction can save)."""
        return sum(layer.macs or 0 for layer in self.rewritten)

    @property
    def conv_macs(self) -> int:
        """Dense MACs per image of every Conv and FusedConv of the model, rewritten or not."""
        return self.rewritten_macs + sum(layer.macs or 0 for layer in self.left_alone)

    @property
    def unknown_macs(self) -> int:
        """Layers whose MACs are unknown (dynamic shapes) and missing from the totals."""
        return sum(layer.macs is None for layer in [*self.rewritten, *self.left_alone])

    def format_table(self) -> str:
        """The rewrite as a text table: one row per rewritten layer, then the others, then totals."""
        rows = [
            (r.name, r.pattern, shape_text(r.input_shape), shape_text(r.output_shape), si(r.macs), str(r.window),
             r.predictor.pattern, r.margin_text)
            for r in self.rewritten
        ]
        header = ("layer", "pattern", "input", "output", "MACs/image", "window", "sampling", "margin")
        lines = _table(header, rows, right=(4, 5, 7))
        if self.left_alone:
            left = [(l.name, l.op_type, si(l.macs), l.reason) for l in self.left_alone]
            lines += ["", *_table(("left alone", "op", "MACs/image", "reason"), left, right=(2,))]
        if self.prepasses:
            lines += ["", "graph passes: " + ", ".join(f"{len(v)} {k}" for k, v in self.prepasses.items())]
        share = f" ({self.rewritten_macs / self.conv_macs:.1%})" if self.conv_macs else ""
        unknown = f"; {self.unknown_macs} layers of unknown size not counted" if self.unknown_macs else ""
        lines += [
            "",
            f"{self.layers_rewritten} layers rewritten, {self.layers_left} left alone; "
            f"MACs/image in rewritten layers: {si(self.rewritten_macs)} of {si(self.conv_macs)} in all conv layers"
            f"{share}{unknown}",
        ]
        return "\n".join(lines)


def si(value: Optional[float]) -> str:
    """1.82G, 70.3M, 512: three significant digits with an SI suffix; ``?`` for None."""
    if value is None:
        return "?"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
