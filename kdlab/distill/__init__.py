"""Knowledge distillation: a student learns from a teacher's soft targets.

- :mod:`~kdlab.distill.targets`    soft targets ``softmax(z / T)``, several teachers
  combined, a transfer set labelled by teachers, the teachers' logits cached once
  (:class:`TeacherCache`), temperature schedules;
- :mod:`~kdlab.distill.losses`     the KD loss
  ``alpha * T^2 * KL(q_teacher || q_student) + (1 - alpha) * CE(z_student, y)``
  (Hinton et al. 2015), decoupled KD, FitNets hints, attention transfer, relational KD
  (distances and angles within a batch), label smoothing as KD from a uniform teacher;
- :mod:`~kdlab.distill.online`     deep mutual learning: students that teach each other
  (:class:`Cohort`, :func:`mutual_learning`);
- :mod:`~kdlab.distill.chains`     teacher-assistant chains (:func:`distill_chain`) and
  born-again generations (:func:`born_again`);
- :mod:`~kdlab.distill.datafree`   data-free distillation: inputs synthesised from a
  teacher's BatchNorm statistics (:func:`deep_inversion`);
- :mod:`~kdlab.distill.generative` token-level forward / reverse KL and GKD's generalised
  JSD for sequence models;
- :mod:`~kdlab.distill.distiller`  :class:`Distiller`, which trains a student through
  the one :func:`kdlab.train.fit` loop;
- :mod:`~kdlab.distill.compare`    :func:`compare_with_alone`: KD against the same
  student trained on its labels alone, at equal optimizer steps;
- :mod:`~kdlab.distill.omitted`    Hinton et al.'s omitted-class experiment
  (:func:`omitted_class_run`) and its bias shift (:func:`bias_shift_for_share`).

Every function that takes a temperature takes it by keyword, with the default
:data:`DEFAULT_TEMPERATURE` (4.0).

>>> import torch
>>> from kdlab.distill import soft_targets, kd_loss
>>> z = torch.tensor([[4.0, 1.0, 0.0]])
>>> soft_targets(z, temperature=4.0).round(decimals=3)
tensor([[0.5430, 0.2570, 0.2000]])
"""
from kdlab.data import UNLABELLED
from kdlab.distill.chains import Generation, born_again, distill_chain
from kdlab.distill.compare import Comparison, compare_with_alone
from kdlab.distill.datafree import (batchnorm_layers, bn_statistic_term, bn_statistics_loss, deep_inversion,
                                    total_variation)
from kdlab.distill.distiller import HINT_KINDS, LOSSES, Distiller, indexed_loader
from kdlab.distill.generative import (GKDObjective, generalized_jsd, lm_loss, lm_objective, sample,
                                      sequence_kd_data, token_kl)
from kdlab.distill.losses import (AT_FORMS, DKDTerms, attention_map, attention_transfer_loss, dkd_loss, dkd_terms,
                                  hint_loss, kd_loss, label_smoothing_loss, make_regressor, rkd_angle_loss,
                                  rkd_distance_loss, rkd_loss, smoothed_targets)
from kdlab.distill.online import Cohort, mutual_learning, mutual_learning_loss, mutual_learning_objective
from kdlab.distill.omitted import OmittedClassRun, bias_shift_for_share, omitted_class_run, without_class
from kdlab.distill.targets import (DEFAULT_TEMPERATURE, MULTI_TEACHER_MODES, TeacherCache, constant_temperature,
                                   cosine_temperature, linear_temperature, multi_teacher_targets, soft_targets,
                                   transfer_targets)

__all__ = [
    "DEFAULT_TEMPERATURE", "UNLABELLED",
    "soft_targets", "multi_teacher_targets", "transfer_targets", "TeacherCache",
    "constant_temperature", "linear_temperature", "cosine_temperature",
    "kd_loss", "DKDTerms", "dkd_terms", "dkd_loss", "make_regressor", "hint_loss", "attention_map",
    "attention_transfer_loss", "AT_FORMS", "rkd_distance_loss", "rkd_angle_loss", "rkd_loss",
    "smoothed_targets", "label_smoothing_loss",
    "Cohort", "mutual_learning", "mutual_learning_loss", "mutual_learning_objective",
    "Generation", "distill_chain", "born_again",
    "batchnorm_layers", "bn_statistic_term", "bn_statistics_loss", "total_variation", "deep_inversion",
    "token_kl", "generalized_jsd", "lm_loss", "lm_objective", "sample", "sequence_kd_data", "GKDObjective",
    "Distiller", "indexed_loader", "LOSSES", "MULTI_TEACHER_MODES", "HINT_KINDS",
    "compare_with_alone", "Comparison",
    "omitted_class_run", "OmittedClassRun", "bias_shift_for_share", "without_class",
]
