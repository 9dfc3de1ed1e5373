"""AutoCL tasks: model compression (Table 2) and data coresets (Figs 1-2)."""
