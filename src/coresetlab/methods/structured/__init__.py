"""Structured (filter/channel) coresets (Mussay et al. 2020) and the channel-pruning baselines at their budget."""

from coresetlab.methods.structured.baselines import L1Filter, UniformChannels, l1_top_k, uniform_channels
from coresetlab.methods.structured.filter_coreset import FilterCoreset, filter_sensitivity, interval_sup
from coresetlab.methods.structured.pruners import GroupView, kept_count, prune_model
from coresetlab.methods.structured.worst_case_conv import worst_case_conv

#: ``method`` names of :func:`coresetlab.prune` (and aliases: the config names) -> selector classes.
METHODS = {
    "filter_coreset": FilterCoreset, "uniform": UniformChannels, "l1": L1Filter,
    "channel_uniform": UniformChannels, "l1_filter": L1Filter,
}

__all__ = [
    "METHODS", "FilterCoreset", "GroupView", "L1Filter", "UniformChannels", "filter_sensitivity", "interval_sup",
    "kept_count", "l1_top_k", "prune_model", "uniform_channels", "worst_case_conv",
]
