#!/usr/bin/python3
"""Open a pixelquery-tiler WMTS layer in QGIS (PyQGIS, no GUI) and render it to a PNG.

Run with Debian's Python and QGIS (``bash tests/qgis/setup.sh``)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis/render_wmts.py \\
        http://127.0.0.1:8000/collections/landsat/WMTSCapabilities.xml --layer landsat \\
        --time 2020-05-18 --out /tmp/qgis.png

The layer is added exactly as QGIS' "Add WMS/WMTS layer" dialog does: ``QgsRasterLayer(uri, name, "wms")`` with a
url-encoded capabilities URL, the layer, tileMatrixSet, format, crs and (optionally) the Time dimension
(``tileDimensions``). Prints one JSON line: layer validity, extent, rendered size and the share of painted pixels;
exits 0 when the layer is valid and the image is not empty.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage


def wmts_uri(capabilities: str, layer: str, matrix_set: str, fmt: str, crs: str, time: str | None) -> str:
    params = [
        ("contextualWMSLegend", "0"),
        ("crs", crs),
        ("dpiMode", "7"),
        ("format", fmt),
        ("layers", layer),
        ("styles", "default"),
        ("tileMatrixSet", matrix_set),
    ]
    if time:
        # QGIS passes WMTS dimensions as "name=value[;name=value]", url-encoded inside the uri
        params.append(("tileDimensions", urllib.parse.quote(f"Time={time}", safe="")))
    params.append(("url", urllib.parse.quote(capabilities, safe="")))
    return "&".join(f"{k}={v}" for k, v in params)


def pick_layer(capabilities: str, wanted: str | None, matrix_set: str) -> str:
    """The layer id as a user picks it in QGIS' WMTS list: ``wanted`` if offered as is, else the layer of collection
    ``wanted`` (``{collection}_...``) linked to ``matrix_set``, else the first layer linked to ``matrix_set``."""
    import urllib.request
    import xml.etree.ElementTree as ET

    ns = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    with urllib.request.urlopen(capabilities, timeout=30) as r:
        root = ET.fromstring(r.read())
    layers = []
    for layer in root.findall("wmts:Contents/wmts:Layer", ns):
        ident = layer.findtext("ows:Identifier", namespaces=ns)
        sets = [e.text for e in layer.findall("wmts:TileMatrixSetLink/wmts:TileMatrixSet", ns)]
        layers.append((ident, sets))
    ids = [i for i, _ in layers]
    if wanted in ids:
        return wanted
    for ident, sets in layers:
        if matrix_set in sets and (not wanted or ident.startswith(wanted + "_")):
            return ident
    raise SystemExit(f"no layer {wanted!r} with tile matrix set {matrix_set} in {ids}")


def painted_fraction(image: QImage, background: QColor) -> float:
    """Share of pixels that differ from the background (the map was painted there)."""
    image = image.convertToFormat(QImage.Format_ARGB32)
    w, h = image.width(), image.height()
    bg = background.rgba()
    try:  # fast path with numpy (Debian's python3-numpy comes with QGIS)
        import numpy as np

        ptr = image.constBits()
        ptr.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
        arr = np.frombuffer(ptr, dtype=np.uint32).reshape(h, image.bytesPerLine() // 4)[:, :w]
        return float((arr != np.uint32(bg)).mean())
    except ImportError:
        step = 4
        painted = total = 0
        for y in range(0, h, step):
            for x in range(0, w, step):
                total += 1
                painted += image.pixel(x, y) != bg
        return painted / total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capabilities", help="WMTSCapabilities.xml URL")
    ap.add_argument("--layer", help="WMTS layer id, or a collection id (its layer for --tile-matrix-set is used)")
    ap.add_argument("--tile-matrix-set", default="WebMercatorQuad")
    ap.add_argument("--format", default="image/png")
    ap.add_argument("--crs", default="EPSG:3857")
    ap.add_argument("--time", help="Time dimension value (YYYY-MM-DD); default: the capabilities' Default")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)

    qgs = QgsApplication([], False)
    qgs.initQgis()
    result: dict = {"qgis": Qgis.QGIS_VERSION}
    try:
        layer_id = pick_layer(args.capabilities, args.layer, args.tile_matrix_set)
        result["layer"] = layer_id
        uri = wmts_uri(args.capabilities, layer_id, args.tile_matrix_set, args.format, args.crs, args.time)
        result["uri"] = uri
        layer = QgsRasterLayer(uri, layer_id, "wms")
        result["valid"] = layer.isValid()
        if not layer.isValid():
            result["error"] = layer.error().summary() if layer.error() else "invalid layer"
            print(json.dumps(result))
            return 1
        extent = layer.extent()
        result["extent"] = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
        result["layer_crs"] = layer.crs().authid()

        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(QgsCoordinateReferenceSystem(args.crs))
        settings.setOutputSize(QSize(args.size, args.size))
        settings.setExtent(extent)
        background = QColor(255, 255, 255, 255)
        settings.setBackgroundColor(background)
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        image = job.renderedImage()
        errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
        image.save(args.out, "PNG")
        result.update(
            out=args.out,
            size=[image.width(), image.height()],
            painted_fraction=painted_fraction(image, background),
            render_errors=errors,
        )
        print(json.dumps(result))
        return 0 if result["painted_fraction"] > 0.05 and not errors else 2
    finally:
        qgs.exitQgis()


if __name__ == "__main__":
    sys.exit(main())
