"""Renamed: this module is now :mod:`kdlab.prune.units` (attention heads, recurrent
hidden units, embedding rows). The old name still imports, with a DeprecationWarning."""
import warnings

from kdlab.prune.units import (PrunedEmbedding, embedding_row_scores, gru_unit_scores, head_scores,
                               prune_embedding_rows, prune_gru_units, prune_heads)

__all__ = ["PrunedEmbedding", "embedding_row_scores", "gru_unit_scores", "head_scores", "prune_embedding_rows",
           "prune_gru_units", "prune_heads"]

warnings.warn("kdlab.prune.beyond_cnn is renamed kdlab.prune.units; import from kdlab.prune.units "
              "(or kdlab.prune) instead", DeprecationWarning, stacklevel=2)
