"""One storage configuration for both I/O paths: chunk files (``fileio``) and Iceberg metadata (pyiceberg).

A warehouse on S3 is written by two clients: this package's ``pyarrow.fs`` filesystem (chunk files) and
pyiceberg's FileIO (metadata, manifests, data files). Both must reach the same endpoint with the same
credentials, or chunks land and the commit then fails against AWS. So every S3 setting is resolved once,
here, from (highest precedence first):

1. catalog properties (``--catalog-prop s3.endpoint=...``, or ``PIXELQUERY_CATALOG_PROPS="k=v,k=v"``),
2. options in the warehouse URI's query string (``s3://bucket/wh?endpoint_override=...&region=...``,
   pyarrow's names),
3. the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
   ``AWS_SESSION_TOKEN``, ``AWS_REGION``; GDAL's ``AWS_S3_ENDPOINT`` + ``AWS_HTTPS`` when no endpoint URL is set),

and handed to pyarrow (``S3FileSystem``) and to pyiceberg (as ``s3.*`` catalog properties) alike. Ingest
*sources* on S3 (``s3://`` rasters, STAC items, pipeline prefixes) are read with the same resolution from the
environment alone (``sources.py``), through pyarrow and GDAL's ``/vsis3/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

log = logging.getLogger(__name__)

CATALOG_PROPS_ENV = "PIXELQUERY_CATALOG_PROPS"

#: pyarrow's ``from_uri`` query options -> the pyiceberg property each one means
_QUERY_TO_PROP = {
    "endpoint_override": "s3.endpoint",
    "region": "s3.region",
    "access_key": "s3.access-key-id",
    "secret_key": "s3.secret-access-key",
    "session_token": "s3.session-token",
    "anonymous": "s3.anonymous",
}
#: the standard AWS environment -> pyiceberg property
_ENV_TO_PROP = (
    ("AWS_ENDPOINT_URL_S3", "s3.endpoint"),
    ("AWS_ENDPOINT_URL", "s3.endpoint"),
    ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
    ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
    ("AWS_SESSION_TOKEN", "s3.session-token"),
    ("AWS_REGION", "s3.region"),
    ("AWS_DEFAULT_REGION", "s3.region"),
)
#: a stopped or unreachable endpoint fails in seconds instead of after minutes of SDK retries
CONNECT_TIMEOUT_S = 5.0
#: other places credentials may come from; with none of them and no keys, an S3 warehouse cannot sign requests
_CREDENTIAL_SOURCES_ENV = (
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class StorageConfigError(ValueError):
    """Storage or catalog settings are malformed, incomplete or unreachable (one line, for the CLI)."""


def parse_props(items: Iterable[str] | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Catalog properties from ``$PIXELQUERY_CATALOG_PROPS`` (``k=v,k=v``), overridden by ``KEY=VALUE`` items."""
    if env is None:
        from .settings import Settings  # the one reader of PIXELQUERY_* variables

        text = Settings().catalog_props.strip()
    else:
        text = env.get(CATALOG_PROPS_ENV, "").strip()
    props: dict[str, str] = {}
    pairs = [p for p in text.split(",") if p.strip()] if text else []
    for source, entries in ((CATALOG_PROPS_ENV, pairs), ("--catalog-prop", list(items or []))):
        for entry in entries:
            key, sep, value = entry.partition("=")
            if not sep or not key.strip():
                raise StorageConfigError(f"{source}: expected KEY=VALUE, got {entry!r}")
            props[key.strip()] = value.strip()
    return props


def format_props(props: Mapping[str, str]) -> str:
    """The inverse of :func:`parse_props` for the environment (values must not contain commas)."""
    for k, v in props.items():
        if "," in k or "," in v:
            raise StorageConfigError(
                f"catalog property {k!r}: values with commas cannot travel through {CATALOG_PROPS_ENV}"
            )
    return ",".join(f"{k}={v}" for k, v in props.items())


def split_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``s3://b/p?endpoint_override=...`` -> (``s3://b/p``, pyiceberg properties from the query string).

    Paths are appended to the base URI only; the query string would otherwise end up in the middle of
    every chunk path. Unknown query options are an error (a typo would silently go to AWS).
    """
    parts = urlsplit(uri)
    if not parts.query:
        return uri, {}
    props = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "scheme":  # pyarrow's http/https switch: part of the endpoint URL here
            continue
        if key not in _QUERY_TO_PROP:
            raise StorageConfigError(f"unknown option {key!r} in warehouse URI (known: {', '.join(_QUERY_TO_PROP)})")
        props[_QUERY_TO_PROP[key]] = value
    scheme = dict(parse_qsl(parts.query)).get("scheme")
    if scheme and "s3.endpoint" in props and "://" not in props["s3.endpoint"]:
        props["s3.endpoint"] = f"{scheme}://{props['s3.endpoint']}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), props


@dataclass(frozen=True)
class StorageConfig:
    """Resolved S3 settings (all ``None`` for local warehouses); see the module docstring for precedence."""

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    anonymous: bool = False

    @classmethod
    def resolve(
        cls,
        uri_props: Mapping[str, str] | None = None,
        props: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StorageConfig:
        """One S3 configuration: explicit ``s3.*`` properties over the URI's options over the AWS environment."""
        env = os.environ if env is None else env
        merged: dict[str, str] = {}
        for name, prop in _ENV_TO_PROP:
            if env.get(name) and prop not in merged:
                merged[prop] = env[name]
        if "s3.endpoint" not in merged and env.get("AWS_S3_ENDPOINT"):
            # GDAL's own names (host only; AWS_HTTPS=NO for http), so a GDAL-style environment reaches pyarrow too
            scheme = "http" if env.get("AWS_HTTPS", "YES").upper() in ("NO", "FALSE", "OFF", "0") else "https"
            merged["s3.endpoint"] = f"{scheme}://{env['AWS_S3_ENDPOINT']}"
        merged.update(uri_props or {})
        merged.update({k: v for k, v in (props or {}).items() if k.startswith("s3.")})
        endpoint = merged.get("s3.endpoint") or None
        if endpoint and "://" not in endpoint:
            endpoint = "https://" + endpoint
        return cls(
            endpoint=endpoint,
            # pyiceberg asks AWS for a bucket's region when none is given: never right for another endpoint
            region=merged.get("s3.region") or ("us-east-1" if endpoint else None),
            access_key=merged.get("s3.access-key-id") or None,
            secret_key=merged.get("s3.secret-access-key") or None,
            session_token=merged.get("s3.session-token") or None,
            anonymous=merged.get("s3.anonymous", "").lower() in ("1", "true", "yes"),
        )

    def iceberg_properties(self) -> dict[str, str]:
        """The same settings as pyiceberg FileIO properties (``s3.*``)."""
        out = {"s3.connect-timeout": str(CONNECT_TIMEOUT_S)}
        for key, value in (
            ("s3.endpoint", self.endpoint),
            ("s3.region", self.region),
            ("s3.access-key-id", self.access_key),
            ("s3.secret-access-key", self.secret_key),
            ("s3.session-token", self.session_token),
        ):
            if value:
                out[key] = value
        if self.anonymous:
            out["s3.anonymous"] = "true"
        return out

    def s3_filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` with these settings."""
        import pyarrow.fs as pafs

        kwargs: dict = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        }
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
            kwargs["scheme"] = parts.scheme
        for key, value in (
            ("region", self.region),
            ("access_key", self.access_key),
            ("secret_key", self.secret_key),
            ("session_token", self.session_token),
        ):
            if value:
                kwargs[key] = value
        if self.anonymous:
            kwargs["anonymous"] = True
        return pafs.S3FileSystem(**kwargs)

    def check_credentials(self, env: Mapping[str, str] | None = None) -> None:
        """Fail with one line when an S3 warehouse has no credentials from any source."""
        env = os.environ if env is None else env
        if self.anonymous or (self.access_key and self.secret_key):
            return
        if any(env.get(name) for name in _CREDENTIAL_SOURCES_ENV):
            return
        if any(os.path.exists(os.path.expanduser(f"~/.aws/{name}")) for name in ("credentials", "config")):
            return
        if self.endpoint is None:
            return  # on AWS an instance or task role may supply credentials
        raise StorageConfigError(
            f"no S3 credentials for {self.endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or --catalog-prop s3.access-key-id=... --catalog-prop s3.secret-access-key=...)"
        )


def describe_os_error(exc: BaseException, uri: str, config: StorageConfig) -> str:
    """One line for an S3 failure: unreachable endpoint, refused credentials, missing bucket, or as is."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = f"{uri} (endpoint {config.endpoint or 'AWS'})"
    lower = text.lower()
    if any(
        s in lower
        for s in (
            "couldn't connect",
            "could not connect",
            "connection refused",
            "could not resolve",
            "timed out",
            "timeout",
            "curl error",
            "failed to connect",
        )
    ):
        return f"cannot reach S3 for {where}: {text}"
    if any(
        s in lower
        for s in ("accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden", "403")
    ):
        return f"S3 refused the credentials for {where}: {text}"
    if "nosuchbucket" in lower or "bucket does not exist" in lower:
        return f"S3 bucket of {where} does not exist: {text}"
    return f"S3 error for {where}: {text}"
