"""Every ``PIXELQUERY_*`` knob of the package in one settings object (pydantic-settings).

Values come from keyword arguments (the CLI, tests), else the environment (``PIXELQUERY_<NAME>``), else the
defaults below. This class is the only place that reads ``PIXELQUERY_*`` variables: the app builds one per
process (``create_app``) and passes it down; code outside a request (opening a catalog) builds its own.
Standard variables that GDAL, pyarrow or boto read themselves (``AWS_*``, ``GDAL_*``) are not settings.

``serve`` hands its options to uvicorn's worker processes, which re-create the app from the environment: it
builds one ``Settings`` from the environment plus its options, exports :meth:`Settings.to_env` and each
worker reads the same values back with ``Settings()``. A bad value, from either side, is one
:class:`SettingsError` line naming the option and its variable.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Annotated, Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import PixelQueryError

ENV_PREFIX = "PIXELQUERY_"

#: the ``serve`` option that sets a field, named in error messages next to its variable
FLAGS = {
    "catalog_uri": "--catalog-uri",
    "catalog_props": "--catalog-prop",
    "refresh_interval": "--refresh-interval",
    "cors_origins": "--cors-origins",
    "api_keys": "--api-key",
    "read_auth": "--read-auth",
    "import_roots": "--import-root",
    "max_upload_mb": "--max-upload-mb",
    "rate_limit": "--rate-limit",
    "job_workers": "--job-workers",
    "job_lease": "--job-lease",
    "job_attempts": "--job-attempts",
    "access_log_json": "--access-log-json",
}
_OPERATORS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


class SettingsError(PixelQueryError, ValueError):
    """A setting has a value the server cannot use; the message is one line naming option and variable."""


def env_name(field: str) -> str:
    """The environment variable of a settings field (``job_lease`` -> ``PIXELQUERY_JOB_LEASE``)."""
    return ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    """Server settings; environment variables are ``PIXELQUERY_`` + the upper-case field name.

    Empty variables count as unset (``PIXELQUERY_RATE_LIMIT=`` means no limit), which is also how
    :meth:`to_env` writes a ``None``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True)

    # -- the warehouse and its catalog ------------------------------------------------------------------------
    warehouse: str | None = Field(None, description="Warehouse URI served by `app_from_env` (uvicorn workers).")
    catalog_uri: str | None = Field(None, description="Catalog URI (see catalog.open_catalog).")
    catalog_props: str = Field("", description="pyiceberg catalog/S3 properties as `k=v,k=v` (storage_config).")
    refresh_interval: float = Field(
        1.0, ge=0, description="Seconds between re-reads of the catalog head (`serve --refresh-interval`)."
    )

    # -- HTTP: caching, CORS, request limits ------------------------------------------------------------------
    head_max_age: int = Field(10, ge=0, description="max-age (s) of collection-head responses; they change on ingest.")
    png_zlevel: int = Field(1, ge=0, le=12, description="libdeflate level of the PNG fast path (1: fastest).")
    cors_origins: str = Field(
        "*", description="Comma-separated origins allowed by CORS; `*` (default) = any, never with credentials."
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1, description="Largest request body (JSON, GeoJSON) the app reads; larger gets 413."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a new connection may take to send its request headers (slow clients)."
    )
    max_histogram_bins: int = Field(1024, ge=1, description="Largest `histogram_bins` of statistics endpoints.")
    max_expression_length: int = Field(2000, ge=1, description="Longest band-math `expression` (characters).")

    # -- jobs, writes and operations (`serve`'s option group of that name) -------------------------------------
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Bearer keys that enable writes; the variable is comma-separated."
    )
    read_auth: bool = Field(False, description="Reads need a key too (Bearer or ?token=).")
    import_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Local folders job sources may come from (os.pathsep-separated)."
    )
    max_upload_mb: int = Field(2048, ge=1, description="Upload size cap (MiB).")
    rate_limit: str | None = Field(None, description="Requests per key or client address, e.g. `50/s`.")
    job_workers: int = Field(1, ge=0, description="Ingest job threads per server process (0 = none).")
    job_lease: float = Field(60.0, gt=0, description="Seconds before a dead worker's job is retried.")
    job_attempts: int = Field(3, ge=1, description="Attempts per job for transient failures.")
    access_log_json: bool = Field(False, description="One JSON access-log line per request (no query strings).")

    def __init__(self, *args: Any, **values: Any) -> None:
        """As pydantic-settings builds it, but a bad value is one :class:`SettingsError` line, not a report."""
        try:
            super().__init__(*args, **values)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return [k.strip() for k in value.split(",") if k.strip()] if isinstance(value, str) else value

    @field_validator("import_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        return [r for r in value.split(os.pathsep) if r] if isinstance(value, str) else value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value:
            from .ops import parse_rate  # imported only when a limit is set (ops pulls in prometheus, limits)

            parse_rate(value)
        return value or None

    @model_validator(mode="after")
    def _read_auth_needs_keys(self) -> Self:
        if self.read_auth and not self.api_keys:
            raise ValueError(f"--read-auth needs at least one --api-key ({env_name('api_keys')})")
        return self

    @cached_property
    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` as a list; ``["*"]`` when it names any origin."""
        origins = [o.strip() for o in self.cors_origins.split(",") if o.strip()]
        return ["*"] if not origins or "*" in origins else origins

    def to_env(self) -> dict[str, str]:
        """Every field as its ``PIXELQUERY_*`` variable, so that ``Settings()`` in another process reads them back.

        ``None`` is written as an empty variable (read back as unset); import roots become absolute, since a
        worker process may resolve them from another directory.
        """
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                text = ""
            elif isinstance(value, bool):
                text = "1" if value else "0"
            elif name == "import_roots":
                text = os.pathsep.join(os.path.abspath(r) for r in value)
            elif isinstance(value, list):
                text = ",".join(value)
            else:
                text = str(value)
            env[env_name(name)] = text
        return env


def describe(exc: ValidationError) -> str:
    """One line for a settings ``ValidationError``: each bad field by its option and variable, and the rule."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else ""
        ctx = error.get("ctx") or {}
        rule = str(ctx.get("error", error["msg"])) if error["type"] == "value_error" else error["msg"]
        if not field:  # a rule across fields (model validator): its message names them
            problems.append(rule)
        elif error["type"] in _OPERATORS:  # "--job-workers >= 0 required (PIXELQUERY_JOB_WORKERS, got -1)"
            limit = next(iter(ctx.values()), "")
            name = FLAGS.get(field, env_name(field))
            also = f"{env_name(field)}, " if field in FLAGS else ""
            problems.append(f"{name} {_OPERATORS[error['type']]} {limit} required ({also}got {error['input']!r})")
        else:
            where = f"{FLAGS[field]} / {env_name(field)}" if field in FLAGS else env_name(field)
            problems.append(f"{where}: {rule} (got {error.get('input')!r})")
    return "invalid setting: " + "; ".join(problems)
