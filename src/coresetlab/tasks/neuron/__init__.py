"""Neuron-coreset tasks (Mussay et al. ICLR 2020): Table 1-2, Figs 2-4, worst case."""
