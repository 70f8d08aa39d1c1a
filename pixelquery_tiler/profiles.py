"""Product profiles: what a product's bands are called and how to treat them.

Profiles are data (``profiles/products.json``), not code, so adding a sensor is a JSON edit. A profile maps
native band names to STAC common names (``red``, ``nir``...), which is what the reader exposes so titiler
expressions such as ``(nir-red)/(nir+red)`` work across products.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import PurePath
from typing import Any

import numpy as np


class ProfileError(ValueError):
    """Unknown product, or bands that do not fit the product."""


@dataclass(frozen=True)
class BandSpec:
    """One band of a product: the native name in file names and ``--bands``, the STAC common name the
    reader and expressions use, and what STAC ``eo:bands`` reports."""

    name: str
    common_name: str
    center_wavelength: float | None = None
    gsd: float | None = None


@dataclass(frozen=True)
class ProductProfile:
    """A product as ``profiles/products.json`` describes it: bands, how overviews resample, STAC metadata,
    scale/offset/nodata defaults and the file-name patterns that detect it."""

    id: str
    title: str
    bands: tuple[BandSpec, ...]
    overview_resampling: str = "average"
    provider: str | None = None
    platform: str | None = None
    instruments: tuple[str, ...] = ()
    gsd: float | None = None
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None
    filename_patterns: tuple[str, ...] = ()
    rendering: dict[str, Any] = field(default_factory=dict)

    def unscale(self, data: np.ma.MaskedArray) -> np.ma.MaskedArray:
        """Physical values of stored ``data``: ``data * scale + offset`` (float32), unchanged without either."""
        if self.scale is None and self.offset is None:
            return data
        out = data.astype("float32") * (self.scale if self.scale is not None else 1.0)
        return np.ma.asarray(out + (self.offset or 0.0))

    def band(self, key: str) -> BandSpec | None:
        """A band by native or common name (case-insensitive)."""
        key = key.lower()
        for band in self.bands:
            if key in (band.name.lower(), band.common_name.lower()):
                return band
        return None


@lru_cache(maxsize=1)
def load_profiles() -> dict[str, ProductProfile]:
    """All profiles by id, read once from the packaged JSON (profiles are data, so they are cached)."""
    raw = json.loads(resources.files(__package__).joinpath("profiles/products.json").read_text())
    profiles = {}
    for pid, p in raw.items():
        profiles[pid] = ProductProfile(
            id=pid,
            title=p.get("title", pid),
            bands=tuple(BandSpec(**b) for b in p.get("bands", [])),
            overview_resampling=p.get("overview_resampling", "average"),
            provider=p.get("provider"),
            platform=p.get("platform"),
            instruments=tuple(p.get("instruments", ())),
            gsd=p.get("gsd"),
            scale=p.get("scale"),
            offset=p.get("offset"),
            nodata=p.get("nodata"),
            filename_patterns=tuple(p.get("filename_patterns", ())),
            rendering=p.get("rendering", {}),
        )
    return profiles


def get_profile(product: str) -> ProductProfile:
    """A profile by id; an unknown id raises ``ProfileError`` listing the known ones (a CLI one-liner)."""
    profiles = load_profiles()
    if product not in profiles:
        raise ProfileError(f"unknown product {product!r}; known: {', '.join(sorted(profiles))}")
    return profiles[product]


def detect_product(path: str, band_count: int) -> ProductProfile:
    """Guess a product from the file name, else a generic profile from the band count."""
    name = PurePath(path).name
    for profile in load_profiles().values():
        if any(re.search(p, name) for p in profile.filename_patterns):
            return profile
    generic = {1: "generic-single", 3: "generic-rgb", 4: "generic-rgbn"}.get(band_count, "generic")
    return get_profile(generic)


_BAND_IN_NAME = re.compile(r"_(B\d{1,2}A?)(?:[_.]|$)", re.IGNORECASE)


def _band_number(name: str) -> tuple[str, bool]:
    """A band name's number without leading zeros and whether it ends in ``A`` (``B02`` == ``B2``, != ``B8A``)."""
    return re.sub(r"\D", "", name).lstrip("0"), name.upper().endswith("A")


def resolve_bands(
    profile: ProductProfile, band_count: int, path: str, bands: list[str] | None = None
) -> list[BandSpec]:
    """The band list of one file: from ``--bands``, the profile, or a per-band file name (``..._B4.TIF``)."""
    if bands:
        if len(bands) != band_count:
            raise ProfileError(f"--bands names {len(bands)} band(s) but the file has {band_count}")
        if len(set(bands)) != len(bands):
            raise ProfileError("--bands has duplicate names")
        out = []
        for b in bands:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", b):
                raise ProfileError(f"band name {b!r} must be an identifier (letters, digits, _)")
            spec = profile.band(b)
            out.append(BandSpec(b, b, spec.center_wavelength, spec.gsd) if spec else BandSpec(b, b))
        return out
    if not profile.bands:
        return [BandSpec(f"b{i}", f"b{i}") for i in range(1, band_count + 1)]
    if band_count == len(profile.bands):
        return list(profile.bands)
    if band_count == 1:
        match = _BAND_IN_NAME.search(PurePath(path).name)
        spec = profile.band(match.group(1)) if match else None
        if spec is None and match:
            # Landsat file names say B2 while some profiles say B02
            key = _band_number(match.group(1))
            spec = next((b for b in profile.bands if _band_number(b.name) == key), None)
        if spec is not None:
            return [spec]
    raise ProfileError(
        f"file has {band_count} band(s) but product {profile.id!r} has {len(profile.bands)}; name them with --bands"
    )


def profile_fit_warnings(
    profile: ProductProfile, count: int, dtype: str, bands: Sequence[str] | None = None
) -> list[str]:
    """Ways a file contradicts the product profile a user named (``--product``): ingest still proceeds.

    A wrong profile is accepted silently today and renders black (e.g. ``planetscope-4band``, whose default
    rendering stretches 0..3000, on an 8-bit RGB+NIR file), so the CLI warns with what to do instead.
    """
    warnings = []  # (a band count that does not fit is an error of its own: resolve_bands)
    rescale = profile.rendering.get("rescale")
    kind = np.dtype(dtype)
    if rescale and kind.kind in "iu":
        top = max(float(r[1]) for r in rescale)
        if top > np.iinfo(kind).max:
            warnings.append(
                f"profile {profile.id!r} renders values up to {top:g} but the file is {dtype} "
                f"(at most {np.iinfo(kind).max}): default tiles will be black; check --product or pass rescale"
            )
    return warnings
