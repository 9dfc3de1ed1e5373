"""Datasets as LightningDataModules (images) and array loaders (tabular)."""
