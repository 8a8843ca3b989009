// loadData(): picks the source's loader and default directory, then splits (Splits.cpp).

#include "Data.h"

#include "ByteSource.h"
#include "Sources.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace repshape::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";  // Debian dataset-fashion-mnist

std::string defaultDir(const std::string& source) {
  if (source == "fashion-mnist") return kFashionMnistDir;
  if (source == "idx") throw DataError("data.dir: data.source = \"idx\" needs a directory holding "
                                       "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                                       "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]");
  return (fs::path(dataRoot()) / source).string();
}

std::string hintFor(const std::string& source) {
  if (source == "fashion-mnist") return "install the Debian package dataset-fashion-mnist or set data.dir";
  if (source == "mnist") return "run deploy/import-mnist.sh once, or set data.dir / REPSHAPE_DATA_DIR";
  if (source == "cifar10")
    return "extract the CIFAR-10 binary version (cifar-10-binary.tar.gz) there, or set data.dir";
  if (source == "cifar100")
    return "extract the CIFAR-100 binary version (cifar-100-binary.tar.gz) there, or set data.dir";
  if (source == "strokes")
    return "put de Jong's stroke sequences and the MNIST label files there, or set data.dir";
  return "";
}

}  // namespace

std::string dataRoot() {
  if (const char* root = std::getenv("REPSHAPE_DATA_DIR"); root && *root) return root;
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : ".") / ".local" / "share" / "repshape").string();
}

void checkDataAvailable(const DataConfig& config) {
  const std::string& source = config.source;
  std::vector<std::string> files;
  std::string subfolder;  // CIFAR: the extracted tarball's folder may sit inside data.dir
  if (source == "cifar10") {
    files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin",
             "test_batch.bin"};
    subfolder = "cifar-10-batches-bin";
  } else if (source == "cifar100") {
    files = {"train.bin", "test.bin"};
    subfolder = "cifar-100-binary";
  } else if (source == "fashion-mnist" || source == "mnist" || source == "idx") {
    files = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  } else if (source == "strokes") {
    files = {"train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"};
  } else {
    return;  // synthetic (or unknown: loadConfig already refused it)
  }
  const std::string dir = config.dir.empty() ? defaultDir(source) : config.dir;
  requireDirectory(dir, source, hintFor(source));
  std::error_code ec;
  auto present = [&](const fs::path& folder, const std::string& name) {
    return fs::is_regular_file(folder / name, ec) || fs::is_regular_file(folder / (name + ".gz"), ec);
  };
  for (const fs::path& folder : {fs::path(dir), fs::path(dir) / subfolder}) {
    if (std::all_of(files.begin(), files.end(), [&](const std::string& f) { return present(folder, f); })) return;
  }
  for (const auto& f : files)
    if (!present(dir, f)) {
      const std::string hint = hintFor(source);
      throw DataError((fs::path(dir) / f).string() + ": file not found (nor " + f + ".gz; data.source = \"" + source +
                      "\")" + (hint.empty() ? "" : "; " + hint));
    }
}

DataSplits loadData(const DataConfig& config, uint64_t seed) {
  const uint64_t dataSeed = config.seed ? static_cast<uint64_t>(*config.seed) : seed;
  const std::string& source = config.source;
  if (source == "projection") return splitSource(generateProjection(config, dataSeed).data, config, dataSeed);
  if (source == "xor") return splitSource(generateXor(config, dataSeed), config, dataSeed);
  if (source == "factors") return splitSource(generateFactors(config, dataSeed).data, config, dataSeed);

  const bool known = source == "fashion-mnist" || source == "mnist" || source == "idx" || source == "cifar10" ||
                     source == "cifar100" || source == "strokes";
  if (!known)
    throw DataError("data.source = \"" + source + "\": unknown source, expected one of fashion-mnist, mnist, "
                    "idx, cifar10, cifar100, strokes, projection, xor, factors");
  const std::string dir = config.dir.empty() ? defaultDir(source) : config.dir;
  requireDirectory(dir, source, hintFor(source));
  SourceData data;
  if (source == "cifar10") {
    data = loadCifar10(dir);
  } else if (source == "cifar100") {
    data = loadCifar100(dir);
  } else if (source == "strokes") {
    data = loadStrokes(dir);
  } else {
    data = loadIdxDirectory(dir, source == "idx" ? 0 : 10);
  }
  return splitSource(std::move(data), config, dataSeed);
}

}  // namespace repshape::data
