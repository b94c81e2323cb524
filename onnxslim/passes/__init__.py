"""The lossless passes: registry (names for --skip), pipeline (fixed-point driver), prune, fold,
fuse, rules/ (rewrite rules, one module per family), upstream (every private onnxscript,
onnx-ir and ONNX Runtime import)."""
