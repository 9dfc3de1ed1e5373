"""Neuron coresets (Mussay et al., ICLR 2020) and the baselines of their experiments (CoreNet, sparsification)."""
