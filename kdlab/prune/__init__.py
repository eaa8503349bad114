"""Pruning that stays pruned, gets faster and saves smaller.

- :mod:`~kdlab.prune.masks`         prunable weights, :class:`PruningMasks`, :func:`sparsity`
- :mod:`~kdlab.prune.importance`    importance criteria shared by every kind of pruning
- :mod:`~kdlab.prune.unstructured`  magnitude, threshold, random, Taylor, SNIP, GraSP and SynFlow pruning
- :mod:`~kdlab.prune.semistructured` N:M sparsity (2:4: what sparse tensor cores run)
- :mod:`~kdlab.prune.schedules`     one-shot, iterative and AGP schedules (training callbacks)
- :mod:`~kdlab.prune.regrow`        prune and regrow: a sparse mask that moves (SET, RigL)
- :mod:`~kdlab.prune.lottery`       lottery tickets: iterative magnitude pruning with rewinding
- :mod:`~kdlab.prune.movement`      movement pruning: scores -sum W * dL/dW gathered while fine-tuning
- :mod:`~kdlab.prune.graph`         channel groups tied together, found by ``torch.export``;
                                    :func:`explain` says what froze the others
- :mod:`~kdlab.prune.structured`    channel, head and unit pruning into a new, smaller model
- :mod:`~kdlab.prune.units`         attention heads, recurrent hidden units, embedding rows
- :mod:`~kdlab.prune.sparse_io`     checkpoints that store only the non-zeros
- :mod:`~kdlab.prune.sensitivity`   per-layer sensitivity scan and its plot

Unlike ``torch.nn.utils.prune``: ``amount`` is the fraction removed in total; masks
are kept by re-applying them after each optimizer step, not by forward hooks, so the
state_dict keys stay the original ones and ``deepcopy``/``torch.save``/``torch.export``
just work; structured pruning really removes channels.

>>> from kdlab import data, models, prune, train
>>> split = data.load_digits()
>>> model = models.pretrained("lenet-300-100")
>>> masks = prune.magnitude_prune(model, 0.9)
>>> _ = train.fit(model, split, epochs=2, callbacks=[masks.callback()])
>>> round(prune.sparsity(model)["global"], 3)
0.9
"""
from kdlab.prune.graph import ChannelGroup, Explanation, channel_groups, explain
from kdlab.prune.importance import (BNScale, BNScalePenalty, GraSP, Importance, Magnitude, Random, Snip, SynFlow,
                                   Taylor)
from kdlab.prune.lottery import LotteryTicket, compounded_sparsity, lottery_ticket
from kdlab.prune.masks import PruningMasks, SparsityLog, prunable_weights, sparsity
from kdlab.prune.movement import MovementScores
from kdlab.prune.regrow import PruneRegrow, drop_and_grow
from kdlab.prune.schedules import AGP, Iterative, OneShot, Schedule
from kdlab.prune.semistructured import follows_nm, nm_mask, nm_prune
from kdlab.prune.sensitivity import SensitivityScan, plot_sensitivity, sensitivity_scan
from kdlab.prune.sparse_io import load_sparse, save_sparse, sparse_size_bytes
from kdlab.prune.structured import (Selection, channel_scores, remove_channels, select_channels,
                                    structured_prune, zero_channels)
from kdlab.prune.units import (PrunedEmbedding, embedding_row_scores, gru_unit_scores, head_scores,
                               prune_embedding_rows, prune_gru_units, prune_heads)
from kdlab.prune.unstructured import (gradient_prune, gradient_scores, magnitude_prune, masks_from_scores,
                                      random_prune, shuffled_prune, std_threshold_prune, threshold_prune,
                                      unstructured_prune)

__all__ = [
    "PruningMasks", "prunable_weights", "sparsity", "SparsityLog",
    "Importance", "Magnitude", "Random", "Taylor", "Snip", "GraSP", "SynFlow", "BNScale", "BNScalePenalty",
    "magnitude_prune", "threshold_prune", "std_threshold_prune", "random_prune",
    "gradient_prune", "gradient_scores", "masks_from_scores", "unstructured_prune", "shuffled_prune",
    "nm_mask", "nm_prune", "follows_nm",
    "Schedule", "OneShot", "Iterative", "AGP", "PruneRegrow", "drop_and_grow",
    "lottery_ticket", "LotteryTicket", "compounded_sparsity", "MovementScores",
    "ChannelGroup", "channel_groups", "explain", "Explanation",
    "channel_scores", "select_channels", "remove_channels", "structured_prune", "zero_channels", "Selection",
    "save_sparse", "load_sparse", "sparse_size_bytes",
    "SensitivityScan", "sensitivity_scan", "plot_sensitivity",
    "gru_unit_scores", "prune_gru_units", "head_scores", "prune_heads",
    "embedding_row_scores", "prune_embedding_rows", "PrunedEmbedding",
]
