"""Pass protocol in the style of onnx-ir: a pass is an object whose ``call`` edits a graph in place
and says what it changed."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import onnx_graphsurgeon as gs

from ..graph import GraphContext


@dataclass
class PassResult:
    modified: bool = False
    changes: list[str] = field(default_factory=list)  # one line per edit, for reports

    def record(self, change: str) -> None:
        self.modified = True
        self.changes.append(change)


class GraphPass(abc.ABC):
    """An in-place pass over the layers that ``in_scope`` accepts (all of them by default)."""

    description: str  # what each change is, for reports: "BatchNormalization folded"

    def __init__(self, in_scope: Callable[[gs.Node], bool] = lambda layer: True):
        self.in_scope = in_scope

    def __call__(self, ctx: GraphContext) -> PassResult:
        return self.call(ctx)

    @abc.abstractmethod
    def call(self, ctx: GraphContext) -> PassResult:
        ...
