"""The store: the only package with SQL. Functions take the engine and return plain read models."""

from workbench.store.engine import dispose_engines, get_engine

__all__ = ["dispose_engines", "get_engine"]
