"""gcnas: neural architecture search over the GCNet global context framework on timm backbones."""
from gcnas.blocks import GlobalContextBlock, NonLocalBlock, preset

__version__ = "0.1.0"

__all__ = ["GlobalContextBlock", "NonLocalBlock", "preset", "__version__"]
