from adapters.s3.object_store import S3Config, S3ObjectStore, s3_client

__all__ = ["S3Config", "S3ObjectStore", "s3_client"]
