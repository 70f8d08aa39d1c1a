// A plain OpenLayers WMTS client, as a user would write it: read the capabilities, take the layer options from
// them (optionsFromCapabilities) and set the Time dimension through `dimensions`.
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import TileLayer from 'ol/layer/Tile.js';
import WMTS, { optionsFromCapabilities } from 'ol/source/WMTS.js';
import WMTSCapabilities from 'ol/format/WMTSCapabilities.js';
import { transformExtent } from 'ol/proj.js';

// Build the map for `capabilitiesUrl`; resolves once the map has rendered completely.
window.runWmts = async function runWmts({ capabilitiesUrl, layer, matrixSet, time, requestEncoding }) {
  const response = await fetch(capabilitiesUrl);
  if (!response.ok) throw new Error(`capabilities: HTTP ${response.status}`);
  const caps = new WMTSCapabilities().read(await response.text());
  const layers = caps.Contents.Layer;
  // the layer asked for, else the first one offered in web mercator (what a user picks for a web map)
  const isMercator = (s) => /WebMercator|GoogleMaps|3857/i.test(s);
  const setsOf = (l) => l.TileMatrixSetLink.map((t) => t.TileMatrixSet);
  const layerCaps = layer
    ? layers.find((l) => l.Identifier === layer)
    : layers.find((l) => setsOf(l).some(matrixSet ? (s) => s === matrixSet : isMercator)) || layers[0];
  if (!layerCaps) throw new Error(`layer ${layer} not in capabilities (${layers.map((l) => l.Identifier)})`);
  const links = setsOf(layerCaps);
  const set = matrixSet || links.find(isMercator) || links[0];

  const config = { layer: layerCaps.Identifier, matrixSet: set };
  if (requestEncoding) config.requestEncoding = requestEncoding; // else OpenLayers takes the first one offered
  const options = optionsFromCapabilities(caps, config);
  if (!options) throw new Error('optionsFromCapabilities returned null');
  const defaults = { ...options.dimensions };
  if (time) options.dimensions = { ...options.dimensions, Time: time };
  const source = new WMTS(options);

  const stats = { started: 0, loaded: 0, failed: 0, urls: [] };
  source.on('tileloadstart', () => { stats.started += 1; });
  source.on('tileloadend', (e) => { stats.loaded += 1; stats.urls.push(e.tile.getImage().src); });
  source.on('tileloaderror', (e) => { stats.failed += 1; stats.urls.push('ERROR ' + e.tile.getImage().src); });

  const projection = source.getProjection();
  const wgs84 = layerCaps.WGS84BoundingBox;
  const extent = transformExtent(wgs84, 'EPSG:4326', projection);
  const map = new Map({
    target: 'map',
    layers: [new TileLayer({ source })],
    view: new View({ projection }),
    controls: [],
    interactions: [],
  });
  map.getView().fit(extent, { size: map.getSize() });
  await new Promise((resolve) => map.once('rendercomplete', resolve));

  // read the pixels back from the layer canvas (same origin: not tainted)
  const canvas = map.getViewport().querySelector('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const { data, width, height } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  let opaque = 0; let sum = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0) { opaque += 1; sum += data[i] + data[i + 1] + data[i + 2]; }
  }
  return {
    layer: layerCaps.Identifier,
    layers: layers.map((l) => l.Identifier),
    matrixSet: set,
    matrixSets: links,
    projection: projection.getCode(),
    format: options.format,
    urls: options.urls,
    requestEncoding: options.requestEncoding,
    defaultDimensions: defaults,
    dimensions: source.getDimensions(),
    timeValues: (layerCaps.Dimension || []).filter((d) => d.Identifier === 'Time').flatMap((d) => d.Value || []),
    zoom: map.getView().getZoom(),
    tiles: stats,
    canvas: { width, height, opaque, opaqueFraction: opaque / (width * height), meanRgb: opaque ? sum / opaque / 3 : 0 },
  };
};
window.olReady = true;
