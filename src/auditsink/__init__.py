"""auditsink: the audit backend for self-managed Kubernetes clusters."""

__version__ = "0.1.0"
