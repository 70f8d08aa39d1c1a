"""Every ``PIXELQUERY_*`` knob of the server in one settings object (pydantic-settings).

Values come from keyword arguments (the CLI, tests), else the environment (``PIXELQUERY_<NAME>``, which is
how ``serve --workers N`` hands them to worker processes), else the defaults below. The object is built
once per app (``create_app``) and passed down; no module reads the environment on its own for these.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; environment variables are ``PIXELQUERY_`` + the upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="PIXELQUERY_", extra="ignore", frozen=True)

    warehouse: str | None = Field(None, description="Warehouse URI served by `app_from_env` (uvicorn workers).")
    catalog_uri: str | None = Field(None, description="Catalog URI (see catalog.open_catalog).")
    refresh_interval: float = Field(
        1.0, ge=0, description="Seconds between re-reads of the catalog head (`serve --refresh-interval`)."
    )
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

    @cached_property
    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` as a list; ``["*"]`` when it names any origin."""
        origins = [o.strip() for o in self.cors_origins.split(",") if o.strip()]
        return ["*"] if not origins or "*" in origins else origins
