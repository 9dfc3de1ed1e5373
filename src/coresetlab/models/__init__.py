"""Networks (built from ``conf/model/*.yaml`` with ``hydra.utils.instantiate``) and parameter counting."""

from coresetlab.models.utils import count_params

__all__ = ["count_params"]
