"""Which layers to rewrite and with which predictor settings: the user's choices, checked against the
op's contract and the model.

A layer's predictor is its PredictiveConv ``window``, ``pattern`` and ``margin``. The margin may be
absolute (``0.35``) or relative to the layer's pre-activation standard deviation (``"0.5sd"``), which
is measured on data and resolved to an absolute value before a node is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Optional, Union

from .. import op
from ..errors import UserError

_RELATIVE_MARGIN = re.compile(r"^\s*([0-9.eE+-]+)\s*sd\s*$")


def _checked(name: str, value: Any, what: str) -> Any:
    try:
        return op.ATTRIBUTES[name].check(value, what)
    except ValueError as error:
        raise UserError(str(error)) from None


def check_window(window: object, what: str = "window") -> int:
    return _checked("window", window, what)


@dataclass(frozen=True)
class Margin:
    """A margin in the pre-activation's units, or in units of its standard deviation (``in_sd``)."""

    value: float = 0.0
    in_sd: bool = False

    @classmethod
    def parse(cls, spec: Union["Margin", float, int, str], what: str = "margin") -> "Margin":
        """``0.35``, ``"0.35"`` or ``"0.5sd"``."""
        if isinstance(spec, Margin):
            return spec
        in_sd = False
        if isinstance(spec, str):
            relative = _RELATIVE_MARGIN.match(spec)
            text = relative.group(1) if relative else spec
            in_sd = relative is not None
            try:
                spec = float(text)
            except ValueError:
                raise UserError(f"{what} must be a number >= 0 or a multiple of the layer's standard deviation "
                                f"such as 0.5sd, got {spec!r}") from None
        return cls(_checked("margin", spec, what), in_sd)

    def resolve(self, layer: str, scales: Optional[Mapping[str, float]]) -> float:
        """The absolute margin of ``layer``; ``scales`` holds each layer's pre-activation standard deviation."""
        if not self.in_sd:
            return self.value
        if scales is None or layer not in scales:
            raise UserError(f"margin {self} of layer {layer!r} is relative to its pre-activation standard "
                            "deviation, which needs images to measure it (give --data)")
        return float(self.value * scales[layer])

    def __str__(self) -> str:
        return f"{self.value:g}sd" if self.in_sd else f"{self.value:g}"


@dataclass(frozen=True)
class Predictor:
    """A layer's predictor settings (the defaults are the op's)."""

    window: int = op.ATTRIBUTES["window"].default
    pattern: str = op.ATTRIBUTES["pattern"].default
    margin: Margin = field(default_factory=Margin)

    @classmethod
    def create(cls, window: int, pattern: Optional[str] = None, margin: Union[Margin, float, str, None] = None,
               what: str = "") -> "Predictor":
        def name(setting: str) -> str:
            return f"{setting} of {what}" if what else setting

        return cls(
            check_window(window, name("window")),
            _checked("pattern", op.ATTRIBUTES["pattern"].default if pattern is None else pattern, name("pattern")),
            Margin() if margin is None else Margin.parse(margin, name("margin")),
        )

    def updated(self, choice: Union[int, Mapping[str, Any], "Predictor"], what: str) -> "Predictor":
        """These settings with a window-map entry applied: ``k``, or ``{"window": k, "pattern": ...,
        "margin": ...}`` whose missing keys keep these settings."""
        if isinstance(choice, Predictor):
            return choice
        if isinstance(choice, Mapping):
            unknown = sorted(set(choice) - set(op.PREDICTOR_ATTRIBUTES))
            if unknown:
                raise UserError(f"{what}: unknown setting {unknown[0]!r} (known: {', '.join(op.PREDICTOR_ATTRIBUTES)})")
            return Predictor.create(choice.get("window", self.window), choice.get("pattern", self.pattern),
                                    choice.get("margin", self.margin), what)
        return replace(self, window=check_window(choice, f"window of {what}"))

    def attributes(self, layer: str, scales: Optional[Mapping[str, float]] = None) -> dict[str, Any]:
        """The PredictiveConv attributes of ``layer``."""
        return dict(window=self.window, pattern=self.pattern, margin=self.margin.resolve(layer, scales))

    def to_json(self) -> Union[int, dict]:
        """The window-map entry: ``k`` alone when pattern and margin are the defaults."""
        if self.pattern == op.ATTRIBUTES["pattern"].default and self.margin == Margin():
            return self.window
        margin = str(self.margin) if self.margin.in_sd else self.margin.value
        return {"window": self.window, "pattern": self.pattern, "margin": margin}

    def __str__(self) -> str:
        """``k=3``, with the pattern and margin where they are not the defaults: ``k=3 checkerboard m=0.5sd``."""
        text = f"k={self.window}"
        if self.pattern != op.ATTRIBUTES["pattern"].default:
            text += f" {self.pattern}"
        return text + (f" m={self.margin}" if self.margin != Margin() else "")


PredictorChoice = Union[int, Mapping[str, Any], Predictor]


def predictor_grid(windows: Iterable[int], patterns: Iterable[str] = (op.ATTRIBUTES["pattern"].default,),
                   margins: Iterable[Union[Margin, float, str]] = (0.0,)) -> list[Predictor]:
    """Every combination, in order, without repeats; window 1 predicts nothing whatever its pattern
    and margin, so it appears once, with the defaults."""
    grid = []
    patterns, margins = list(patterns), list(margins)
    for window in windows:
        for pattern in patterns:
            for margin in margins:
                predictor = Predictor.create(window, pattern, margin)
                grid.append(Predictor(1) if predictor.window == 1 else predictor)
    return list(dict.fromkeys(grid))


def margins_in_sd(predictor: Predictor, window_map: Optional[Mapping[str, PredictorChoice]] = None) -> bool:
    """Whether a margin of ``predictor`` or of a window-map entry is relative to a standard deviation
    (and so needs images to be resolved)."""
    entries = [predictor.updated(choice, f"layer {name!r}") for name, choice in (window_map or {}).items()]
    return any(p.margin.in_sd for p in (predictor, *entries))


def check_names(names: Iterable[str], known: Iterable[str], what: str) -> frozenset[str]:
    """``names`` as a set, refusing any the model does not have (a typo would silently select nothing)."""
    names, known = frozenset(names), list(known)
    unknown = sorted(names - set(known))
    if unknown:
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise UserError(
            f"{what}: no layer named {', '.join(map(repr, unknown))} in the model (its layers: {listed or 'none'})"
        )
    return names


def layer_predictors(base: Predictor, window_map: Optional[Mapping[str, PredictorChoice]],
                     layer_names: Iterable[str], what: str = "window map") -> dict[str, Predictor]:
    """The window map's entries as full predictors (missing settings from ``base``), names checked."""
    window_map = dict(window_map or {})
    if not all(isinstance(name, str) for name in window_map):
        raise UserError(f"{what}: layer names must be strings")
    check_names(window_map, layer_names, what)
    return {name: base.updated(choice, f"layer {name!r}") for name, choice in window_map.items()}


@dataclass(frozen=True)
class LayerSelection:
    predictor: Predictor = field(default_factory=Predictor)
    per_layer: Mapping[str, Predictor] = field(default_factory=dict)
    layers: Optional[frozenset[str]] = None  # only these, when given
    exclude: frozenset[str] = frozenset()

    @classmethod
    def create(
        cls,
        layer_names: Iterable[str],
        predictor: Predictor,
        window_map: Optional[Mapping[str, PredictorChoice]] = None,
        layers: Optional[Iterable[str]] = None,
        exclude: Optional[Iterable[str]] = None,
    ) -> "LayerSelection":
        """Checked choices: settings in the contract's ranges, names that exist, not both ``layers`` and ``exclude``."""
        layer_names = list(layer_names)
        if layers is not None and exclude is not None:
            raise UserError("give layers or exclude, not both")
        return cls(
            predictor,
            layer_predictors(predictor, window_map, layer_names),
            None if layers is None else check_names(layers, layer_names, "layers"),
            frozenset() if exclude is None else check_names(exclude, layer_names, "exclude"),
        )

    def skip_reason(self, name: str) -> Optional[str]:
        if self.layers is not None and name not in self.layers:
            return "not among the selected layers"
        if name in self.exclude:
            return "excluded"
        return None

    def predictor_for(self, name: str) -> Predictor:
        return self.per_layer.get(name, self.predictor)
