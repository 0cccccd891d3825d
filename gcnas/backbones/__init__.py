"""Insertion sites across timm backbones, insertion of blocks, and cost (params, FLOPs, latency).

This layer imports torch, timm and :mod:`gcnas.blocks` only: no optuna, hydra or wandb.
"""
from gcnas.backbones.cost import BlockCost, Cost, UncountedOpsWarning, count_flops, measure_cost
from gcnas.backbones.families import FAMILIES, GENERIC_POSITIONS, POSITIONS
from gcnas.backbones.insert import build_block, insert, inserted_blocks
from gcnas.backbones.sites import (GenericFallbackWarning, Site, backbone_data_config, create_backbone, list_sites,
                                  resolve_sites, sites_by_key)
from gcnas.backbones.weights import BackboneWeights
from gcnas.backbones import tiny  # noqa: F401  (registers gcnas_resnet_tiny with timm)

__all__ = ["Site", "list_sites", "resolve_sites", "sites_by_key", "create_backbone", "backbone_data_config", "insert",
           "inserted_blocks", "build_block", "BackboneWeights", "measure_cost", "count_flops", "Cost", "BlockCost",
           "UncountedOpsWarning", "GenericFallbackWarning", "FAMILIES", "POSITIONS", "GENERIC_POSITIONS"]
