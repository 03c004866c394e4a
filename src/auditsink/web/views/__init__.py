"""One module per page; each exposes ``view(store, query, **path_params) -> dict``."""
