"""Where Ray runs: start local Ray (or join ``ray.address``) once per process, quietly when asked."""
from __future__ import annotations

import logging

from fusionlog.config import RayConfig


def ensure_ray(cfg: RayConfig, progress: bool = True) -> None:
    """Start local Ray or join the configured cluster, once; Ray Data progress bars only when ``progress``."""
    import ray

    if not ray.is_initialized():
        kwargs = {"address": cfg.address} if cfg.address else ({"num_cpus": cfg.num_cpus} if cfg.num_cpus else {})
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
