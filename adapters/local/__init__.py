from adapters.local.object_store import LocalObjectStore

__all__ = ["LocalObjectStore"]
