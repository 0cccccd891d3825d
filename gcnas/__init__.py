"""gcnas: neural architecture search over the GCNet global context framework on timm backbones."""
from gcnas.arch import Architecture, BlockSpec, Placement, build_model, load_model
from gcnas.backbones import insert, list_sites, measure_cost
from gcnas.blocks import GlobalContextBlock, NonLocalBlock, preset
from gcnas.errors import ConfigError

__version__ = "0.1.0"

__all__ = ["GlobalContextBlock", "NonLocalBlock", "preset", "Architecture", "BlockSpec", "Placement", "build_model",
           "load_model", "list_sites", "insert", "measure_cost", "ConfigError", "__version__"]
