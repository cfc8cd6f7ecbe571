"""The ObjectStore port on boto3: AWS or any S3-compatible endpoint.

Retries: tenacity retries throttling (503 SlowDown), 5xx and connection errors with
exponential backoff and jitter, bounded in attempts and in total time. botocore's own retries
are off (`total_max_attempts=1`) so the two never multiply. Client errors (403, NoSuchBucket,
other 4xx) fail at once. Large bodies go up in concurrent multipart parts; any failure aborts
the upload, so no partial object and no open multipart upload is left behind."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, NoCredentialsError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from core.domain.errors import DomainError, ErrorCode, ErrorType, object_exists
from core.ports.object_store import StoredObject

log = logging.getLogger(__name__)

T = TypeVar("T")
MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's smallest part, except the last
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_RETRYABLE_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
}
_ACCESS_DENIED = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden",
                  "InvalidToken", "ExpiredToken", "AllAccessDisabled"}


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None  # None: AWS
    region: str | None = None
    path_style: bool = False  # most S3-compatible servers want path-style addressing
    multipart_threshold: int = 8 * MIB
    part_size: int = 8 * MIB
    max_concurrency: int = 4
    presign_expiry: int = 3600
    max_attempts: int = 5
    max_retry_seconds: float = 30.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # explicit credentials (RunPod's BUCKET_* variables); None: the standard AWS chain
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.presign_expiry <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign expiry must be 1..{MAX_PRESIGN_SECONDS} seconds")
        if self.part_size < MIN_PART_SIZE:
            raise ValueError("multipart part size must be at least 5 MiB")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def __repr__(self) -> str:  # never print a secret
        return (f"S3Config(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
                f"path_style={self.path_style}, multipart_threshold={self.multipart_threshold})")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _RETRYABLE_CODES or status >= 500 or status == 429
    return isinstance(exc, (ConnectionError, HTTPClientError))


def to_domain_error(exc: BaseException, bucket: str, key: str | None, action: str) -> DomainError:
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    details = {"bucket": bucket, "key": key}
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        details.update(s3_code=code, http_status=status)
        if code in _ACCESS_DENIED or status == 403:
            return DomainError(ErrorType.STORAGE, ErrorCode.S3_ACCESS_DENIED,
                               f"access denied to {where} ({code}): check the credentials and the "
                               "bucket policy", details)
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return object_exists(bucket, key or "")
        if code == "NoSuchBucket":
            return DomainError(ErrorType.STORAGE, ErrorCode.S3_NO_SUCH_BUCKET,
                               f"bucket {bucket} does not exist", details)
        return DomainError(ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED,
                           f"could not {action} {where}: {code or status}", details)
    if isinstance(exc, NoCredentialsError):
        return DomainError(ErrorType.STORAGE, ErrorCode.S3_ACCESS_DENIED,
                           f"no S3 credentials to {action} {where}: set BUCKET_ACCESS_KEY_ID and "
                           "BUCKET_SECRET_ACCESS_KEY (or the AWS_* variables)", details)
    log.warning("could not %s %s: %s", action, where, exc)  # the log has the text; the answer its kind
    return DomainError(ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED,
                       f"could not {action} {where} ({type(exc).__name__})", details)


def s3_client(config: S3Config, botocore_attempts: int | None = None) -> Any:
    """The one way this service makes a boto3 S3 client from its settings: the object store's
    (retried by tenacity, so botocore tries once) and the S3 voice library's (botocore retries,
    `config.max_attempts` by default)."""
    botocore_config = Config(
        signature_version="s3v4",
        retries={"total_max_attempts": botocore_attempts or config.max_attempts, "mode": "standard"},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_pool_connections=max(10, config.max_concurrency * 2),
        s3={"addressing_style": "path" if config.path_style else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        config=botocore_config,
    )


class S3ObjectStore:
    def __init__(self, config: S3Config | None = None, client: Any = None) -> None:
        self.config = config or S3Config()
        self.client = client or self._make_client()

    def _make_client(self):
        return s3_client(self.config, botocore_attempts=1)  # tenacity retries (_retrying)

    def _retrying(self) -> Retrying:
        c = self.config
        return Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(c.max_attempts) | stop_after_delay(c.max_retry_seconds),
            wait=wait_exponential_jitter(multiplier=c.backoff_initial, max=c.backoff_max, jitter=c.backoff_initial),
            before_sleep=lambda state: log.warning(
                "S3 call failed (attempt %d: %s), retrying", state.attempt_number,
                type(state.outcome.exception()).__name__),
            reraise=True,
        )

    def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        return self._retrying()(fn, **kwargs)

    # -- the port -------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> StoredObject:
        """Without `overwrite` the write is conditional (`If-None-Match: *`, on the single PUT or
        on CompleteMultipartUpload): S3 and the stores that implement conditional writes refuse
        it atomically with 412, which becomes OBJECT_EXISTS. A store that ignores the header
        writes anyway; the use case checks for the key before generating, which leaves only
        the race between that check and this write open on such stores."""
        extra = {"ContentType": content_type, "Metadata": {k: str(v) for k, v in (metadata or {}).items()}}
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            if len(data) >= self.config.multipart_threshold:
                etag = self._put_multipart(bucket, key, data, extra, condition)
            else:
                etag = self._call(self.client.put_object, Bucket=bucket, Key=key, Body=data, **extra,
                                  **condition)["ETag"]
        except DomainError:
            raise
        except (ClientError, BotoCoreError) as exc:
            raise to_domain_error(exc, bucket, key, "upload to") from exc
        return StoredObject(bucket, key, self.url_for(bucket, key), f"s3://{bucket}/{key}",
                            len(data), etag.strip('"') if etag else None)

    def _put_multipart(self, bucket: str, key: str, data: bytes, extra: dict, condition: dict) -> str:
        upload_id = self._call(self.client.create_multipart_upload, Bucket=bucket, Key=key, **extra)["UploadId"]
        size = self.config.part_size
        offsets = range(0, len(data), size)

        def upload(number_offset: tuple[int, int]) -> dict:
            number, offset = number_offset
            response = self._call(self.client.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
                                  PartNumber=number, Body=data[offset : offset + size])
            return {"PartNumber": number, "ETag": response["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="s3-part") as pool:
                parts = list(pool.map(upload, enumerate(offsets, start=1)))
            return self._call(self.client.complete_multipart_upload, Bucket=bucket, Key=key,
                              UploadId=upload_id, MultipartUpload={"Parts": parts}, **condition)["ETag"]
        except BaseException:
            try:
                self._call(self.client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # the first error is the one to report
                log.exception("could not abort multipart upload of s3://%s/%s", bucket, key)
            raise

    def get(self, bucket: str, key: str) -> bytes:
        return self._call(self.client.get_object, Bucket=bucket, Key=key)["Body"].read()

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        except NoCredentialsError as exc:  # nothing can be written either: said before any work
            raise to_domain_error(exc, bucket, key, "check") from exc

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._call(self.client.delete_object, Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise to_domain_error(exc, bucket, key, "delete") from exc

    def url_for(self, bucket: str, key: str) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.config.presign_expiry
        )

    def validate_bucket_access(self, bucket: str) -> None:
        """Fail fast at worker start when the default bucket is missing or forbidden."""
        try:
            self._call(self.client.head_bucket, Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                exc.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
            raise to_domain_error(exc, bucket, None, "reach") from exc
        except BotoCoreError as exc:
            raise to_domain_error(exc, bucket, None, "reach") from exc
