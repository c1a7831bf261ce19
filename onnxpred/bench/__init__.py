"""Speed measurements of PredictiveConv against onnxruntime's own Conv (commands, never tests)."""
