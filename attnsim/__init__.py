"""attnsim: what does this attention variant cost on that GPU?

Public API (all torch-free):
    load_hardware(name_or_path) -> Hardware
    Workload(...)                      the attention problem
    predict(workload, hw, kernel=None) -> Prediction (time, bound, FLOPs, bytes, tiles, kernels)
    bound(workload, hw) -> Bound       the speed-of-light time
    predict_many(...)                  the vectorized path for sweeps
    resolve(variant, params, **shapes) -> Problem   a variant and its -p parameters resolved as the CLI does
    predict_problem(problem, hw) -> Prediction      (prediction.params: the resolved -p values)
    predict_variant(hw, variant, params, **shapes)  the two in one call
"""
__version__ = "0.1.0"

__all__ = ["__version__", "load_hardware", "Workload", "predict", "bound", "predict_many", "AttnsimError",
           "resolve", "Problem", "predict_problem", "predict_variant"]


def __getattr__(name):  # lazy: `import attnsim` stays cheap
    if name == "load_hardware":
        from .simulator.hardware import load_hardware
        return load_hardware
    if name == "Workload":
        from .simulator.workload import Workload
        return Workload
    if name == "predict":
        from .simulator.model import predict
        return predict
    if name == "predict_many":
        from .simulator.vectorized import predict_many
        return predict_many
    if name == "bound":
        from .simulator.bound import bound
        return bound
    if name in ("resolve", "Problem", "predict_problem", "predict_variant"):
        from .simulator import problem
        return getattr(problem, name)
    if name == "AttnsimError":
        from .simulator.errors import AttnsimError
        return AttnsimError
    raise AttributeError(f"module 'attnsim' has no attribute {name!r}")
