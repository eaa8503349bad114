"""Pruning that stays pruned, gets faster and saves smaller.

- :mod:`~kdlab.prune.masks`         prunable weights, :class:`PruningMasks`, :func:`sparsity`
- :mod:`~kdlab.prune.unstructured`  magnitude, threshold, random, Taylor and SNIP pruning
- :mod:`~kdlab.prune.schedules`     one-shot, iterative and AGP schedules (training callbacks)
- :mod:`~kdlab.prune.graph`         channel groups tied together, found by ``torch.export``
- :mod:`~kdlab.prune.structured`    channel pruning into a new, smaller model
- :mod:`~kdlab.prune.sparse_io`     checkpoints that store only the non-zeros
- :mod:`~kdlab.prune.sensitivity`   per-layer sensitivity scan and its plot
- :mod:`~kdlab.prune.beyond_cnn`    GRU hidden units, attention heads, embedding rows

Unlike ``torch.nn.utils.prune``: ``amount`` is the fraction removed in total; masks
are kept by re-applying them after each optimizer step, not by forward hooks, so the
state_dict keys stay the original ones and ``deepcopy``/``torch.save``/``torch.export``
just work; structured pruning really removes channels.

>>> from kdlab import data, prune, train, zoo
>>> split = data.load_digits()
>>> model = zoo.pretrained("lenet-300-100")
>>> masks = prune.magnitude_prune(model, 0.9)
>>> _ = train.fit(model, split, epochs=2, callbacks=[masks.callback()])
>>> round(prune.sparsity(model)["global"], 3)
0.9
"""
from kdlab.prune.beyond_cnn import (PrunedEmbedding, embedding_row_scores, gru_unit_scores,
                                    head_scores, prune_embedding_rows, prune_gru_units, prune_heads)
from kdlab.prune.graph import ChannelGroup, channel_groups
from kdlab.prune.masks import PruningMasks, SparsityLog, prunable_weights, sparsity
from kdlab.prune.schedules import AGP, Iterative, OneShot, Schedule
from kdlab.prune.sensitivity import SensitivityScan, plot_sensitivity, sensitivity_scan
from kdlab.prune.sparse_io import load_sparse, save_sparse, sparse_size_bytes
from kdlab.prune.structured import channel_scores, select_channels, structured_prune
from kdlab.prune.unstructured import (gradient_prune, gradient_scores, magnitude_prune,
                                      masks_from_scores, random_prune, std_threshold_prune,
                                      threshold_prune)

__all__ = [
    "PruningMasks", "prunable_weights", "sparsity", "SparsityLog",
    "magnitude_prune", "threshold_prune", "std_threshold_prune", "random_prune",
    "gradient_prune", "gradient_scores", "masks_from_scores",
    "Schedule", "OneShot", "Iterative", "AGP",
    "ChannelGroup", "channel_groups", "channel_scores", "select_channels", "structured_prune",
    "save_sparse", "load_sparse", "sparse_size_bytes",
    "SensitivityScan", "sensitivity_scan", "plot_sensitivity",
    "gru_unit_scores", "prune_gru_units", "head_scores", "prune_heads",
    "embedding_row_scores", "prune_embedding_rows", "PrunedEmbedding",
]
