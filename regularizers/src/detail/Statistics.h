#pragma once
// Per-layer sums over samples that the activation penalties are built from (SPEC §1, §4).
//
// One layer's local sums are packed into two flat fp64 tensors: a SUM part (all-reduced with
// Reducer::sum) and a MAX part (Reducer::max, only rr / cw-rr). Only the sums that the layer's
// penalties need are computed. Both are produced by one custom autograd function with a
// hand-written backward, so a step costs a handful of GEMMs and no per-op autograd bookkeeping.
//
// Precision: the uncentred Gram Σ z zᵀ is formed in fp64 as G̃ + s·S1ᵀ + S1·sᵀ − n·s·sᵀ, where
// s is the (detached, fp32) local mean, G̃ = (Z−s)ᵀ(Z−s) an fp32 GEMM of centred data and
// S1 = Σz accumulated in fp64. Centring makes the fp32 GEMM accurate even when |mean|/std = 1e3,
// and the fp64 correction lets ranks with different shifts sum their Grams exactly.

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <utility>

namespace repshape::reg::detail {

// Which sums one layer's penalties need.
struct StatsNeeds {
  bool sum = false;             // Σ z                        [M]
  bool sqDiag = false;          // Σ z²                       [M]
  bool gram = false;            // Σ z zᵀ                     [M, M]
  bool absCol = false;          // Σ |z|                      [M]
  bool rowAbsMax = false;       // max_n Σ_i |z_ni|           [1]   (MAX part)
  bool classSum = false;        // Σ_{S_k} z                  [K, M]
  bool classSqDiag = false;     // Σ_{S_k} z²                 [K, M]
  bool classGram = false;       // Σ_{S_k} z zᵀ               [K, M, M]
  bool classAbsCol = false;     // Σ_{S_k} |z|                [K, M]
  bool classRowAbsMax = false;  // max_{n∈S_k} Σ_i |z_ni|     [K]   (MAX part)
  bool cross = false;           // xcov: Σ p [C] and Σ p zᵀ   [C, M]

  bool anyClass() const { return classSum || classSqDiag || classGram || classAbsCol || classRowAbsMax; }
  bool anyAtAll() const { return sum || sqDiag || gram || absCol || rowAbsMax || cross || anyClass(); }
  void merge(const StatsNeeds& other);
};

// Offsets of each sum inside the packed buffers; kAbsent where not needed. A plain array of
// integers so it can ride in an autograd context.
class StatsLayout {
 public:
  enum Field : int {
    kWidth, kClasses, kProbs,
    // SUM part
    kCount, kClassCount, kSum, kSqDiag, kGram, kAbsCol, kClassSum, kClassSqDiag, kClassGram,
    kClassAbsCol, kProbSum, kCross, kSumSize,
    // MAX part
    kRowAbsMax, kClassRowAbsMax, kMaxSize,
    kNumFields
  };
  static constexpr int64_t kAbsent = -1;

  StatsLayout() { fields_.fill(kAbsent); }
  StatsLayout(const StatsNeeds& needs, int64_t width, int64_t classes, int64_t probs);
  static StatsLayout fromVector(const std::vector<int64_t>& v);
  std::vector<int64_t> toVector() const { return {fields_.begin(), fields_.end()}; }

  int64_t operator[](Field f) const { return fields_[f]; }
  bool has(Field f) const { return fields_[f] != kAbsent; }
  int64_t width() const { return fields_[kWidth]; }
  int64_t classes() const { return fields_[kClasses]; }
  int64_t probs() const { return fields_[kProbs]; }
  int64_t sumSize() const { return fields_[kSumSize]; }
  int64_t maxSize() const { return fields_[kMaxSize]; }

 private:
  std::array<int64_t, kNumFields> fields_;
};

// Global statistics of one layer: fp64 views into the reduced buffers, autograd-connected.
// Absent sums are undefined tensors.
struct LayerStats {
  torch::Tensor count;           // scalar
  torch::Tensor classCount;      // [K]
  torch::Tensor sum, sqDiag, absCol;                   // [M]
  torch::Tensor gram;                                  // [M, M]
  torch::Tensor rowAbsMax;                             // scalar
  torch::Tensor classSum, classSqDiag, classAbsCol;    // [K, M]
  torch::Tensor classGram;                             // [K, M, M]
  torch::Tensor classRowAbsMax;                        // [K]
  torch::Tensor probSum;                               // [C]
  torch::Tensor cross;                                 // [C, M]
};

// This rank's sums of one layer. z: [n, M] (any float dtype), labels: [n] int64 in [0, K) (may be
// empty unless class sums are needed), probs: [n, C] (may be empty unless cross is needed).
// Returns {SUM part [sumSize], MAX part [maxSize]}, fp64, differentiable w.r.t. z and probs.
std::pair<torch::Tensor, torch::Tensor> localStatistics(const torch::Tensor& z, const torch::Tensor& labels,
                                                         const torch::Tensor& probs, const StatsLayout& layout);

// Views of reduced buffers (each may start at an offset of a larger packed buffer).
LayerStats unpackStatistics(const torch::Tensor& sumPart, const torch::Tensor& maxPart, const StatsLayout& layout);

}  // namespace repshape::reg::detail
