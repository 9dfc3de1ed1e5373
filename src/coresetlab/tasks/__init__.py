"""Tasks: one ``run(cfg, ctx) -> dict`` per experiment kind, called by :mod:`coresetlab.runner`."""
