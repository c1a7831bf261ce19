"""In-place passes over a :class:`~onnxpred.rewriter.graph.GraphContext`."""
