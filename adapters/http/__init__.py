from adapters.http.app import HttpService, create_app

__all__ = ["HttpService", "create_app"]
