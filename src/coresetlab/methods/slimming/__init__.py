"""Network slimming (Liu et al., ICCV 2017): L1 sparsity on BN scaling factors, global channel pruning."""

from coresetlab.methods.slimming.slimming import (
    NetworkSlimming,
    SlimmingNoSparsity,
    add_bn_l1_subgradient,
    block_internal_groups,
    bn_gammas,
    global_threshold,
    slim_chain,
    slim_groups,
    slimming_masks,
)

__all__ = ["NetworkSlimming", "SlimmingNoSparsity", "add_bn_l1_subgradient", "block_internal_groups", "bn_gammas",
           "global_threshold", "slim_chain", "slim_groups", "slimming_masks"]
