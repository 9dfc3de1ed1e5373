"""The aggregator: run folders -> pandas -> the papers' tables and figures, paper values side by side.

``python -m coresetlab.report [RUN_DIR ...] --out DIR`` (defaults: every run under ``outputs/`` ->
``outputs/report/``). See :mod:`coresetlab.report.build`.
"""
