"""kdlab: a hands-on course and a small PyTorch library on model compression.

Modules, one idea each:

- :mod:`kdlab.data`      embedded digits data, torchvision datasets, loaders
- :mod:`kdlab.models`    small MLPs and CNNs, teacher/student presets
- :mod:`kdlab.train`     seeding and the one training loop
- :mod:`kdlab.evaluate`  accuracy, F1, parameters, size, FLOPs, latency, reports
- :mod:`kdlab.distill`   soft targets, KD losses, Distiller
- :mod:`kdlab.prune`     unstructured and structured pruning, masks, schedules
- :mod:`kdlab.grading`   self-checks and the grader
"""
__version__ = "0.1.0"

__all__ = ["__version__", "soft_targets", "kd_loss"]


def __getattr__(name):
    # The two functions every lesson needs are importable from the top level,
    # without importing the distillation module before it is used.
    if name in ("soft_targets", "kd_loss"):
        from kdlab import distill

        return getattr(distill, name)
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")
