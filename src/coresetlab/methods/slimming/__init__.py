"""Network slimming (Liu et al., ICCV 2017): L1 sparsity on BN scaling factors, global channel pruning."""

from coresetlab.methods.slimming.slimming import (
    NetworkSlimming,
    add_bn_l1_subgradient,
    bn_gammas,
    global_threshold,
    slim_chain,
    slimming_masks,
)

__all__ = ["NetworkSlimming", "add_bn_l1_subgradient", "bn_gammas", "global_threshold", "slim_chain", "slimming_masks"]
