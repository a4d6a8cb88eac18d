"""Where Ray runs: start local Ray (or join ``ray.address``) once per process, quietly when asked."""
from __future__ import annotations

import logging
import os

from fusionlog.config import RayConfig


def ensure_ray(cfg: RayConfig, progress: bool = True) -> None:
    """Start local Ray or join the configured cluster, once; Ray Data progress bars only when ``progress``."""
    import ray

    if not ray.is_initialized():
        # Without an address, start our own local Ray: a bare ray.init() would attach to any cluster another
        # program left running on this machine. A `ray job submit` driver gets RAY_ADDRESS and joins its cluster.
        address = cfg.address or os.environ.get("RAY_ADDRESS") or "local"
        kwargs = {"num_cpus": cfg.num_cpus} if address == "local" and cfg.num_cpus else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
