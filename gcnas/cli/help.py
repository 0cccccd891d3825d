"""What the commands' ``--help`` pages (``conf/hydra/help/<command>.yaml``) read from Hydra at the time they print.

Each command's page lists the config groups that apply to it, by hand, since Hydra's ``$APP_CONFIG_GROUPS`` lists
every group in the search path (the other commands' and the internal ``gcnas`` one). The options of each group and the
one the command line chose are read here, through the resolver ``${gcnas.options:GROUP}``, so a new option file shows
without editing the page.
"""
from __future__ import annotations

import textwrap

from omegaconf import OmegaConf

__all__ = ["group_options"]


def group_options(group: str, indent: int = 0, width: int = 118) -> str:
    """``GROUP``'s chosen option and every option Hydra finds for it, e.g. ``now: tpe; options: gp, grid, nsga2,
    random, tpe`` (``now: none`` where the command line chose none: a group added with ``+group=option``), wrapped at
    ``width`` for a page where it starts at column ``indent``."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    options = sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    try:
        chosen = HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # no Hydra run config (printing the help config itself): the options alone
        chosen = None
    text = f"now: {chosen or 'none'}; options: {', '.join(options)}"
    return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                         break_on_hyphens=False).lstrip(" ")


OmegaConf.register_new_resolver("gcnas.options", group_options, replace=True)
