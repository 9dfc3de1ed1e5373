"""Coreset-based neural network compression (Dubey, Chatterjee, Ahuja, ECCV 2018).

Modules: :mod:`.layers` (weight matrices, factorised layers, channel surgery), :mod:`.pruning`
(activation-based pruning, §3.2), :mod:`.coreset` (Coreset-K/S/A, §3.3–3.5), :mod:`.compress`
(layer-wise rank search, §3.6), :mod:`.deep_compression` + :mod:`.huffman` + :mod:`.serialize`
(Deep Compression and the real on-disk format), :mod:`.method` (the ``coreset_method`` option).
Generic over ``nn.Conv2d`` / ``nn.Linear`` so the same code serves LeNet-5 and ImageNet-family nets.
"""

from coresetlab.methods.dubey.compress import CoresetConfig, coreset_compress, uniform_compress
from coresetlab.methods.dubey.coreset import (
    coreset_a,
    coreset_k,
    coreset_s,
    filter_importance,
    weighted_low_rank_em,
)
from coresetlab.methods.dubey.deep_compression import DCConfig, deep_compress
from coresetlab.methods.dubey.layers import Factorized, factorize, weight_matrix
from coresetlab.methods.dubey.method import DubeyMethod, Variant
from coresetlab.methods.dubey.pruning import activation_prune, apply_ap
from coresetlab.methods.dubey.serialize import load_model, save_model

__all__ = [
    "CoresetConfig", "DCConfig", "DubeyMethod", "Factorized", "Variant", "activation_prune", "apply_ap",
    "coreset_a", "coreset_compress", "coreset_k", "coreset_s", "deep_compress", "factorize", "filter_importance",
    "load_model", "save_model", "uniform_compress", "weight_matrix", "weighted_low_rank_em",
]
