"""AutoCL (Maalouf et al., *A Unified Approach to Coreset Learning*): the objective, data coresets, students."""
