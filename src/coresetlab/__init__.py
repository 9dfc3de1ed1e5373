"""coresetlab: reproducible coreset learning, neural pruning and compression.

Layers (each importable without the ones above it):

* ``coresetlab.methods``  -- pure, typed algorithm functions (one module per paper);
* ``coresetlab.models`` / ``coresetlab.data`` -- networks and LightningDataModules;
* ``coresetlab.lit``      -- Lightning glue (training modules, parent cache);
* ``coresetlab.tasks``    -- one function per experiment kind, called by :mod:`coresetlab.runner`;
* ``coresetlab.report``   -- the aggregator that turns run folders into the papers' tables/figures;
* :func:`coresetlab.prune` -- the structured-pruning methods on any user's CNN (:mod:`coresetlab.prune`).
"""

from coresetlab.prune import prune

__version__ = "0.1.0"
__all__ = ["prune"]
