"""Pure, typed algorithm functions, one module (or package) per paper; no Lightning, no Hydra."""
