"""Which layers to rewrite and with which window: the user's choices, checked against the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Union

from ..errors import UserError

# PredictiveConv refuses larger windows; beyond any feature map's size they change nothing anyway.
MAX_WINDOW = 4096
WindowChoice = Union[int, Mapping[str, int]]


def check_window(window: object, what: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
        raise UserError(f"{what} must be an integer from 1 to {MAX_WINDOW}, got {window!r}")
    return window


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


@dataclass(frozen=True)
class LayerSelection:
    window: int = 3
    window_map: Mapping[str, int] = field(default_factory=dict)
    layers: Optional[frozenset[str]] = None  # only these, when given
    exclude: frozenset[str] = frozenset()

    @classmethod
    def create(
        cls,
        layer_names: Iterable[str],
        window: int = 3,
        window_map: Optional[Mapping[str, int]] = None,
        layers: Optional[Iterable[str]] = None,
        exclude: Optional[Iterable[str]] = None,
    ) -> "LayerSelection":
        """Checked choices: windows in range, names that exist, not both ``layers`` and ``exclude``."""
        layer_names = list(layer_names)
        if layers is not None and exclude is not None:
            raise UserError("give layers or exclude, not both")
        window_map = dict(window_map or {})
        for name, k in window_map.items():
            check_window(k, f"window of layer {name!r}")
        check_names(window_map, layer_names, "window map")
        return cls(
            check_window(window),
            window_map,
            None if layers is None else check_names(layers, layer_names, "layers"),
            frozenset() if exclude is None else check_names(exclude, layer_names, "exclude"),
        )

    def skip_reason(self, name: str) -> Optional[str]:
        if self.layers is not None and name not in self.layers:
            return "not among the selected layers"
        if name in self.exclude:
            return "excluded"
        return None

    def window_for(self, name: str) -> int:
        return self.window_map.get(name, self.window)
