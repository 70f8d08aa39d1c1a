"""Import stac-fastapi's core types without their import-time settings warning.

``stac_fastapi.types.core`` builds a module-level ``ApiSettings()`` from the environment and logs a warning
that title/description/version are defaults. ``add_stac_api`` passes explicit settings to ``StacApi``, so the
warning is wrong for this app and only confuses operators; it is muted for that one import.
"""

import logging

_settings_log = logging.getLogger("stac_fastapi.types.config")
_previous = _settings_log.level
_settings_log.setLevel(logging.ERROR)
try:
    import stac_fastapi.types.core  # noqa: F401
finally:
    _settings_log.setLevel(_previous)
