"""Data for lstmkit: generators of the classic long-time-lag benchmark tasks."""

# Every public name of longlag, re-exported on first use (longlag imports torch; the other data
# modules, which lstmkit.infer.onnx_predict reads, do not); they are listed once, in
# longlag.__all__.


def __getattr__(name: str):
    import importlib

    longlag = importlib.import_module("lstmkit.data.longlag")
    if name == "__all__" or name in longlag.__all__:
        return getattr(longlag, name)
    raise AttributeError(f"module 'lstmkit.data' has no attribute {name!r}")
