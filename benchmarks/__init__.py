"""auditsink benchmarks: run each module with ``python -m benchmarks.<name>`` (see README.md)."""
