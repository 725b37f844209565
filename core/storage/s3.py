"""The S3 object store (boto3): any S3-compatible endpoint, multipart uploads, presigned URLs.

The only module that imports boto3. Uploads go through boto3's transfer manager, which
switches to a multipart upload above `s3_multipart_threshold_bytes`.

boto3 and botocore are imported on first use, not with this module: every process imports it
(the API, each worker, beat, the relay), and they cost ~24 MB of memory and a few hundred ms of
start-up apiece where no store is on S3 (issue 17: idle memory of the platform).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from core.errors import InvalidInput
from core.settings import Settings
from core.storage.base import (
    CHUNK_BYTES,
    ObjectNotFound,
    ObjectStore,
    PayloadTooLarge,
    StoredObject,
    check_key,
)

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def _client_error() -> Any:
    """botocore's error class, for `except` clauses (evaluated only when something is raised)."""
    from botocore.exceptions import ClientError  # lazily: see the module docstring

    return ClientError


def _transfer_config(**options: Any) -> TransferConfig:
    from boto3.s3.transfer import TransferConfig  # lazily: see the module docstring

    return TransferConfig(**options)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """`s3://bucket/prefix/` → (bucket, `prefix/`); a prefix always ends in `/`."""
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidInput(f"{uri!r} is not an s3://bucket/prefix/ URI.")
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if prefix:
            check_key(prefix)
        return cls(parts.netloc, prefix)


def make_client(settings: Settings) -> Any:
    """A boto3 S3 client from the `TRAINPORT_S3_*` settings (unset ones: boto3's defaults)."""
    import boto3  # lazily: see the module docstring
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    style = "path" if settings.s3_endpoint_url else "auto"  # MinIO/Ceph/moto want path style
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region or None,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )


class S3ObjectStore:
    def __init__(
        self, client: Any, bucket: str, prefix: str = "", transfer: TransferConfig | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.transfer = transfer or _transfer_config()

    @classmethod
    def from_settings(cls, settings: Settings, client: Any | None = None) -> S3ObjectStore:
        transfer = _transfer_config(
            multipart_threshold=settings.s3_multipart_threshold_bytes,
            multipart_chunksize=settings.s3_multipart_chunk_bytes,
        )
        prefix = settings.s3_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(client or make_client(settings), settings.s3_bucket, prefix, transfer)

    def at(self, location: S3Location) -> S3ObjectStore:
        """The same client and transfer settings on another bucket and prefix."""
        return S3ObjectStore(self.client, location.bucket, location.prefix, self.transfer)

    def scoped(self, prefix: str) -> ObjectStore:
        return S3ObjectStore(
            self.client, self.bucket, self.prefix + check_key(prefix), self.transfer
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key) if key else self.prefix

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        self.client.upload_fileobj(stream, self.bucket, self._key(key), Config=self.transfer)

    def _get(self, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except _client_error() as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
                raise ObjectNotFound(key) from None
            raise

    def read_bytes(self, key: str, limit: int = 16 * CHUNK_BYTES) -> bytes:
        body = self._get(key)
        try:
            data: bytes = body.read(limit + 1)
        finally:
            body.close()
        if len(data) > limit:
            raise PayloadTooLarge(limit)
        return data

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        return self._chunks(self._get(key))

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = self._key(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        )
        found = [
            StoredObject(item["Key"][len(base) :], int(item["Size"]))
            for page in pages
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")  # folder markers some tools write
        ]
        return sorted(found, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(prefix) + o.key for o in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def presigned_url(self, key: str, seconds: int) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=seconds
        )
        return url

    def presigned_put_url(self, key: str, seconds: int) -> str | None:
        url: str = self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=seconds
        )
        return url

    def presigned_delete_url(self, key: str, seconds: int) -> str | None:
        url: str = self.client.generate_presigned_url(
            "delete_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=seconds,
        )
        return url

    # Presigned multipart uploads: the client PUTs the parts, the platform lists and joins them.

    def start_multipart(self, key: str) -> str:
        """A new multipart upload of `key`; its S3 UploadId."""
        started = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        upload_id: str = started["UploadId"]
        return upload_id

    def presigned_part_url(self, key: str, upload_id: str, part: int, seconds: int) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key), "UploadId": upload_id}
        url: str = self.client.generate_presigned_url(
            "upload_part", Params={**params, "PartNumber": part}, ExpiresIn=seconds
        )
        return url

    def uploaded_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]] | None:
        """{part number: (size, ETag)} of what has arrived, or None when no such upload is open
        (completed or aborted)."""
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
        )
        try:
            return {
                int(p["PartNumber"]): (int(p["Size"]), str(p["ETag"]))
                for page in pages
                for p in page.get("Parts", [])
            }
        except _client_error() as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchUpload", "404"}:
                return None
            raise

    def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        """Join parts 1..n (their ETags in order) into the object."""
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
