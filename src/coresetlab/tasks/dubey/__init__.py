"""Dubey et al. (ECCV 2018) tasks."""
