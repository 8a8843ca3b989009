#pragma once
// Numeric arrays on disk for `repshape inspect`: CSV (comma- or whitespace-separated, optional
// header line, '#' comments) and NumPy .npy (format 1.0–3.0, little-endian bool/int/uint8/float,
// C or Fortran order). Errors name the file and what was expected (std::invalid_argument).

#include <torch/torch.h>

#include <string>

namespace repshape::io {

// A 1-D or 2-D array as [rows, cols] (1-D arrays become one column). Floating-point files give
// kFloat64; integer and bool .npy files give kInt64; CSV always gives kFloat64.
torch::Tensor readArray(const std::string& path);

// Labels: a one-column array of non-negative integers, [n] kInt64.
torch::Tensor readLabels(const std::string& path);

// Writes a 2-D tensor (or 1-D as one column) as CSV with %.17g, no header.
void writeCsv(const std::string& path, const torch::Tensor& matrix);

}  // namespace repshape::io
