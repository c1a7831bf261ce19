"""Give every Conv and FusedConv a unique, non-empty node name.

Layer names are how users select layers (``layers=``, ``exclude=``, ``window_map=``) and how reports
and counter outputs are labelled, so each layer needs one that is unique and stable. A named layer
keeps its name; an unnamed one is called after its output tensor; a repeated name gets a suffix.
"""

from __future__ import annotations

from ..graph import GraphContext
from .base import GraphPass, PassResult


class NameLayers(GraphPass):
    description = "layers named"

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        seen: set[str] = set()
        for conv in ctx.convs():
            if conv.name and conv.name not in seen:
                seen.add(conv.name)
                continue
            old = conv.name
            conv.name = ctx.unique_node_name(old or conv.outputs[0].name)
            seen.add(conv.name)
            result.record(f"{conv.op} {old!r} named {conv.name!r}" if old else f"unnamed {conv.op} named {conv.name!r}")
        return result
