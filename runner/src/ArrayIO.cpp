#include "ArrayIO.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace repshape::io {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::invalid_argument(path + ": " + what);
}

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits a CSV line on commas and whitespace; false if a token is not a number.
bool parseRow(const std::string& line, std::vector<double>& row) {
  row.clear();
  const char* p = line.c_str();
  while (*p) {
    while (*p == ',' || std::isspace(static_cast<unsigned char>(*p))) ++p;
    if (!*p) break;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(p, &end);
    if (end == p || (*end && *end != ',' && !std::isspace(static_cast<unsigned char>(*end)))) return false;
    row.push_back(v);
    p = end;
  }
  return true;
}

torch::Tensor readCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open (expected a CSV file of numbers)");
  std::vector<double> values, row;
  int64_t rows = 0, cols = -1, lineNo = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lineNo;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    if (!parseRow(line, row)) {
      if (rows == 0 && cols < 0) {  // a header line
        cols = -2;
        continue;
      }
      fail(path, "line " + std::to_string(lineNo) + ": not a list of numbers: '" + line.substr(0, 60) + "'");
    }
    if (row.empty()) continue;
    if (cols >= 0 && static_cast<int64_t>(row.size()) != cols)
      fail(path, "line " + std::to_string(lineNo) + ": " + std::to_string(row.size()) + " columns, expected " +
                     std::to_string(cols));
    cols = static_cast<int64_t>(row.size());
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  if (rows == 0) fail(path, "no numeric rows (expected a CSV file of numbers)");
  return torch::tensor(values, torch::kFloat64).view({rows, cols});
}

// The value of `key` in a .npy header dict, e.g. "'descr': '<f4'" → "'<f4'".
std::string headerValue(const std::string& header, const std::string& key, const std::string& path) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) fail(path, "npy header has no '" + key + "': " + header);
  auto p = header.find(':', at);
  if (p == std::string::npos) fail(path, "malformed npy header: " + header);
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (header[p] == '(') return header.substr(p, header.find(')', p) - p + 1);
  const auto end = header.find_first_of(",}", p);
  return header.substr(p, end - p);
}

torch::Tensor readNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (expected a NumPy .npy file)");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) fail(path, "unsupported .npy format version " + std::to_string(major));
  uint32_t headerLength = 0;
  unsigned char len[4] = {0, 0, 0, 0};
  if (!in.read(reinterpret_cast<char*>(len), major == 1 ? 2 : 4)) fail(path, "truncated .npy header");
  headerLength = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<uint32_t>(len[3]) << 24);
  std::string header(headerLength, '\0');
  if (!in.read(header.data(), headerLength)) fail(path, "truncated .npy header");

  std::string descr = headerValue(header, "descr", path);
  descr.erase(std::remove(descr.begin(), descr.end(), '\''), descr.end());
  const bool fortran = headerValue(header, "fortran_order", path).find("True") != std::string::npos;
  const std::string shapeText = headerValue(header, "shape", path);
  std::vector<int64_t> shape;
  for (const char* p = shapeText.c_str(); *p;) {
    if (std::isdigit(static_cast<unsigned char>(*p))) {
      char* end = nullptr;
      shape.push_back(std::strtoll(p, &end, 10));
      p = end;
    } else {
      ++p;
    }
  }
  if (shape.empty() || shape.size() > 2)
    fail(path, "array of shape " + shapeText + ", expected 1-D or 2-D");
  if (descr.size() < 3 || descr[0] == '>') fail(path, "dtype '" + descr + "' unsupported (expected little-endian)");
  const std::string kind = descr.substr(1);
  c10::ScalarType type;
  if (kind == "f4") type = torch::kFloat32;
  else if (kind == "f8") type = torch::kFloat64;
  else if (kind == "i8") type = torch::kInt64;
  else if (kind == "i4") type = torch::kInt32;
  else if (kind == "i2") type = torch::kInt16;
  else if (kind == "i1") type = torch::kInt8;
  else if (kind == "u1" || kind == "b1") type = torch::kUInt8;
  else fail(path, "dtype '" + descr + "' unsupported (expected float32/64, int8/16/32/64, uint8 or bool)");

  const int64_t rows = shape[0], cols = shape.size() == 2 ? shape[1] : 1;
  torch::Tensor data = torch::empty({rows * cols}, type);
  const auto bytes = static_cast<std::streamsize>(data.numel() * data.element_size());
  if (!in.read(static_cast<char*>(data.data_ptr()), bytes))
    fail(path, "truncated data: expected " + std::to_string(bytes) + " bytes for shape " + shapeText);
  data = fortran ? data.view({cols, rows}).t().contiguous() : data.view({rows, cols});
  return data.is_floating_point() ? data.to(torch::kFloat64) : data.to(torch::kInt64);
}

}  // namespace

torch::Tensor readArray(const std::string& path) {
  if (endsWith(path, ".npy")) return readNpy(path);
  if (endsWith(path, ".csv") || endsWith(path, ".txt")) return readCsv(path);
  fail(path, "unknown file type (expected .csv or .npy)");
}

torch::Tensor readLabels(const std::string& path) {
  const torch::Tensor a = readArray(path);
  if (a.size(1) != 1) fail(path, std::to_string(a.size(1)) + " columns, expected one column of class labels");
  const torch::Tensor v = a.reshape({-1});
  const torch::Tensor asLong = v.to(torch::kInt64);
  // The first row that is not a label 0, 1, 2 …: NaN, a fraction or a negative number.
  const torch::Tensor bad = torch::isfinite(v).logical_not().logical_or(asLong.to(v.scalar_type()).ne(v)).logical_or(v.lt(0));
  if (bad.any().item<bool>()) {
    const int64_t row = bad.nonzero()[0][0].item<int64_t>();
    fail(path, "row " + std::to_string(row) + " (counting from 0) is " + std::to_string(v[row].item<double>()) +
                   "; labels must be non-negative integers");
  }
  return asLong;
}

void writeCsv(const std::string& path, const torch::Tensor& matrix) {
  const torch::Tensor m = (matrix.dim() == 1 ? matrix.unsqueeze(1) : matrix).to(torch::kFloat64).contiguous().cpu();
  TORCH_CHECK(m.dim() == 2, "writeCsv: tensor of shape ", matrix.sizes(), ", expected 1-D or 2-D");
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
  const double* p = m.data_ptr<double>();
  for (int64_t r = 0; r < m.size(0); ++r) {
    for (int64_t c = 0; c < m.size(1); ++c) std::fprintf(f, c ? ",%.17g" : "%.17g", p[r * m.size(1) + c]);
    std::fputc('\n', f);
  }
  if (std::fclose(f) != 0) throw std::runtime_error(path + ": write failed");
}

}  // namespace repshape::io
