"""kdlab: a hands-on course and a small PyTorch library on model compression.

The library, in the order the course teaches it (one idea per module):

- :mod:`kdlab.data`      the embedded digits, torchvision datasets, tasks beyond
  images (:mod:`kdlab.data.tasks`), a text corpus (:mod:`kdlab.data.text`), in-memory loaders
- :mod:`kdlab.models`    small MLPs, CNNs, GRU, transformer and embedding models,
  presets; trained ones from :mod:`kdlab.models.zoo`
- :mod:`kdlab.train`     seeding and the one training loop
- :mod:`kdlab.evaluate`  predictions, accuracy, F1, parameters, size, FLOPs, latency,
  reports
- :mod:`kdlab.distill`   soft targets, KD losses (logits, features, attention, relations,
  label smoothing), the Distiller, KD against the student alone, mutual learning,
  teacher-assistant and born-again chains, data-free inversion, generative KD
- :mod:`kdlab.prune`     unstructured, N:M and structured pruning, masks, schedules,
  pruning at initialisation, lottery tickets, movement pruning, prune-and-regrow
- :mod:`kdlab.quantize`  int8 quantization (dynamic, static with calibration, quantization-aware
  training), weight-only int4, and the size on disk
- :mod:`kdlab.lowrank`   low-rank factorisation of Linear and conv layers (truncated SVD)
- :mod:`kdlab.pipeline`  distillation and pruning combined; prune, fine-tune, evaluate
- :mod:`kdlab.deploy`    export with ``torch.export``, prune to a latency budget
- :mod:`kdlab.plots`     the plots the lessons share

The course, apart from the library:

- :mod:`kdlab.course`    the notebooks, ``kdlab lab``, the interview drill, widgets
- :mod:`kdlab.grading`   exercise self-checks and the grader
- :mod:`kdlab.cli`       the ``kdlab`` command
"""
__version__ = "0.1.0"

__all__ = ["__version__", "soft_targets", "kd_loss"]


def __getattr__(name):
    # The two functions every lesson needs are importable from the top level,
    # without importing the distillation package before it is used.
    if name in ("soft_targets", "kd_loss"):
        from kdlab import distill

        return getattr(distill, name)
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")
