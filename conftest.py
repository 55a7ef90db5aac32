"""Collection rules for the doctests of the package (``testpaths = tests skvae``)."""

import importlib.util

# skvae/onnx.py fails to import without its extra, by design: skip its doctests then
collect_ignore = [] if all(importlib.util.find_spec(name) for name in
                           ("skl2onnx", "onnx", "onnxruntime")) else ["skvae/onnx.py"]
