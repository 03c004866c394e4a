"""Alert notifiers: one module per destination, one registry, one delivery loop (base.py)."""
