"""FusionLog: zero-label cross-system log anomaly detection (ZeroLog small model + LLM distillation)."""

__version__ = "0.1.0"
