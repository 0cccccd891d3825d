"""Hydra configuration of gcnas (installed as the package gcnas.conf)."""
