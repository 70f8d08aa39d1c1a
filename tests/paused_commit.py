"""``python tests/paused_commit.py SECONDS ARGS...``: the ``pixelquery-tiler`` command line, with every catalog
commit held back SECONDS first.

Crash tests need a process that has written all its chunk files and not yet committed, long enough to kill it
there. The pause wraps ``catalog.commit_append`` (the one call that makes an ingest visible) in this process
only, so the package carries no test hook; ``serve`` runs its job workers in this same process (uvicorn with
one worker), so the pause holds for jobs too.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout under test, as `-m` would find it

from pixelquery_tiler import catalog
from pixelquery_tiler.cli import main


def pause_commits(seconds: float) -> None:
    """Make every ``catalog.commit_append`` in this process wait ``seconds`` before committing."""
    commit = catalog.commit_append

    def paused(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return commit(*args, **kwargs)

    catalog.commit_append = paused  # type: ignore[assignment]  # ingest calls it through the module


if __name__ == "__main__":
    pause_commits(float(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
