// loadData(): picks the source's loader and default directory, then splits (Splits.cpp).

#include "Data.h"

#include "ByteSource.h"
#include "Sources.h"

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

std::string checkDataAvailable(const DataConfig& config) {
  const std::string& source = config.source;
  if (source == "projection" || source == "xor" || source == "factors") return "";
  const bool known = source == "fashion-mnist" || source == "mnist" || source == "idx" || source == "cifar10" ||
                     source == "cifar100" || source == "strokes";
  if (!known)
    throw DataError("data.source = \"" + source + "\": unknown source, expected one of fashion-mnist, mnist, "
                    "idx, cifar10, cifar100, strokes, projection, xor, factors");
  const std::string dir = config.dir.empty() ? defaultDir(source) : config.dir;
  requireDirectory(dir, source, hintFor(source));
  return dir;
}

DataSplits loadData(const DataConfig& config, uint64_t seed) {
  const uint64_t dataSeed = config.seed ? static_cast<uint64_t>(*config.seed) : seed;
  const std::string& source = config.source;
  if (source == "projection") return splitSource(generateProjection(config, dataSeed).data, config, dataSeed);
  if (source == "xor") return splitSource(generateXor(config, dataSeed), config, dataSeed);
  if (source == "factors") return splitSource(generateFactors(config, dataSeed).data, config, dataSeed);

  const std::string dir = checkDataAvailable(config);
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
