"""Each task of a saved model as its own smallest runnable network (ONNX, TorchScript), with its multiply-adds and
latency (``python -m deployment.export``). onnx, onnxscript and onnxruntime are optional dependencies (the ``export``
extra): without them, this package stops its command line with a one-line error."""
import importlib.util
import sys

MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
if MISSING:
    print(f"error: exporting needs {', '.join(MISSING)}, not installed: pip install {' '.join(MISSING)} (or the "
          f"project with its export extra)", file=sys.stderr)
    raise SystemExit(2)
