// Trainer::evaluate: sharded evaluation with exact global results. Each rank runs its contiguous
// part of the split; loss and error sums and the representation-metric statistics are reduced once,
// so the figures equal a single-process pass over the whole split for any number of ranks.
#include "CommReducer.h"
#include "Objective.h"
#include "Trainer.h"

#include <cmath>
#include <optional>

namespace repshape {

namespace {
double toDouble(const std::optional<double>& v) { return v.value_or(NAN); }
}  // namespace

SplitResult Trainer::evaluate(
    const data::Dataset& split,
    std::vector<std::pair<std::string, std::vector<std::pair<std::string, double>>>>* layers) {
  torch::NoGradGuard noGrad;
  const Shard shard = shardOf(split.size(), comm_.rank(), comm_.size());
  const bool metrics = layers && !captureLayers_.empty();

  std::vector<reg::MetricAccumulator> accumulators;
  if (metrics) {
    reg::MetricOptions options;
    options.tdvDims.assign(config_.eval.tdvDims.begin(), config_.eval.tdvDims.end());
    options.udFractions = config_.eval.udFractions;
    for (const auto& layer : captureLayers_) {
      options.reluLayer = network_->isReluLayer(layer);
      accumulators.emplace_back(network_->layerWidth(layer), options);
    }
  }

  // [Σ loss, Σ error] accumulated on the device: no host round trip per batch.
  torch::Tensor sums = torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  // Clustering and MI bounds need this rank's rows of each layer (never the other ranks').
  const bool keepRows = metrics && (config_.eval.clustering || config_.eval.mi);
  std::vector<std::vector<torch::Tensor>> layerRows(keepRows ? captureLayers_.size() : 0);
  std::vector<torch::Tensor> labelParts;      // task labels (MI bounds)
  std::vector<torch::Tensor> fineLabelParts;  // the source's labels before data.relabel (clustering)
  std::vector<torch::Tensor> captured;
  // eval.save_covariance: per layer [rows, Σ z (M), Σ z zᵀ (M²)] in fp64 on this rank's rows (a conv
  // layer's rows are its (sample, pixel) pairs); summed once.
  const bool covariances = metrics && config_.eval.saveCovariance;
  std::vector<torch::Tensor> moments;
  if (covariances)
    for (const auto& layer : captureLayers_) {
      const int64_t width = network_->layerWidth(layer);
      moments.push_back(torch::zeros({1 + width + width * width}, torch::kFloat64));
    }
  const ForwardContext ctx = context(false, 0, 0, 0);
  for (int64_t begin = shard.begin; begin < shard.end; begin += config_.eval.batchSize) {
    const int64_t rows = std::min(config_.eval.batchSize, shard.end - begin);
    const torch::Tensor x = split.inputs.narrow(0, begin, rows).to(device_);
    const torch::Tensor y = split.labels.narrow(0, begin, rows).to(device_);
    const torch::Tensor logits = network_->forward(x, ctx, metrics ? &captured : nullptr);
    const std::string& objective = config_.train.objective;
    const torch::Tensor loss = taskLossSum(objective, logits, x, y);
    const torch::Tensor errors = errorSum(objective, logits, x, y);
    sums += torch::stack({loss.to(torch::kDouble), errors.to(torch::kDouble)});
    for (std::size_t i = 0; i < accumulators.size(); ++i) accumulators[i].add(captured[i]);
    for (std::size_t i = 0; i < moments.size(); ++i) {
      const torch::Tensor z = captured[i].detach().to(torch::kCPU, torch::kFloat64).flatten(1);
      moments[i] += torch::cat({torch::full({1}, static_cast<double>(z.size(0)), torch::kFloat64), z.sum(0),
                                z.t().mm(z).flatten()});
    }
    if (keepRows) {
      for (std::size_t i = 0; i < layerRows.size(); ++i) layerRows[i].push_back(captured[i].cpu());
      labelParts.push_back(y.cpu());
      fineLabelParts.push_back(split.fineLabels().narrow(0, begin, rows));
    }
  }
  torch::Tensor global = sums.cpu();
  if (comm_.size() > 1) {
    global = global.to(comm_.device());
    comm_.allReduce(global, dist::ReduceOp::Sum, "eval.sums");
    global = global.cpu();
  }

  SplitResult result;
  result.samples = split.size();
  const double total = std::max<double>(1.0, static_cast<double>(split.size()));
  result.loss = global[0].item<double>() / total;
  result.error = reportedError(config_.train.objective, global[1].item<double>(), split.size());
  result.errorKey = errorKey(config_.train.objective);

  if (metrics) {
    CommReducer reducer(comm_, "metrics");
    layers->clear();
    for (std::size_t i = 0; i < captureLayers_.size(); ++i) {
      auto& values = layers->emplace_back(captureLayers_[i], std::vector<std::pair<std::string, double>>()).second;
      for (const auto& [name, value] : accumulators[i].finish(reducer)) values.emplace_back(name, value.value_or(NAN));
      if (covariances) {
        const int64_t width = network_->layerWidth(captureLayers_[i]);
        const torch::Tensor sums = reducer.sum(moments[i]).to(torch::kCPU);
        const double n = std::max(1.0, sums[0].item<double>());
        const torch::Tensor mean = sums.narrow(0, 1, width) / n;
        torch::Tensor c = sums.narrow(0, 1 + width, width * width).reshape({width, width}) / n - mean.outer(mean);
        c = (c + c.t()) / 2;  // exact symmetry for the eigen solver
        SplitResult::Covariance saved;
        saved.layer = captureLayers_[i];
        saved.width = width;
        saved.samples = static_cast<int64_t>(sums[0].item<double>());
        const torch::Tensor flat = c.contiguous().flatten();
        saved.matrix.assign(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
        if (torch::isfinite(c).all().item<bool>()) {
          const torch::Tensor eig = at::linalg_eigvalsh(c, "L").flip(0).contiguous();
          saved.eigenvalues.assign(eig.data_ptr<double>(), eig.data_ptr<double>() + eig.numel());
        }
        result.covariances.push_back(std::move(saved));
      }
      if (!keepRows) continue;
      const int64_t width = network_->layerWidth(captureLayers_[i]);
      const torch::Tensor local = layerRows[i].empty() ? torch::zeros({0, width}) : torch::cat(layerRows[i]);
      const torch::Tensor labels = labelParts.empty() ? torch::zeros({0}, torch::kLong) : torch::cat(labelParts);
      const torch::Tensor fine = fineLabelParts.empty() ? torch::zeros({0}, torch::kLong) : torch::cat(fineLabelParts);
      // Clustering and MI of non-finite rows mean nothing (and KMeans would not converge): every
      // rank agrees to skip them from one summed count, and the count is reported instead.
      torch::Tensor nonFinite = torch::isfinite(local).logical_not().any(1).sum().to(torch::kFloat64).reshape({1});
      nonFinite = reducer.sum(nonFinite);
      if (nonFinite.item<double>() > 0) {
        values.emplace_back("nonfinite_rows", nonFinite.item<double>());
        continue;
      }
      if (const auto& c = config_.eval.clustering) {
        reg::ClusteringOptions options;
        options.k = c->k;
        options.nInit = static_cast<int>(c->nInit);
        options.maxIter = static_cast<int>(c->maxIter);
        options.tol = c->tol;
        options.normalization = reg::parseMiNormalization(c->normalization);
        options.seed = config_.train.seed;
        for (const auto& [name, value] : reg::clusterAndScore(local, fine, options, reducer).metrics())
          values.emplace_back(name, toDouble(value));
        for (const int64_t k : c->kValues) {  // AMI / NMI against the number of clusters
          options.k = k;
          for (const auto& [name, value] : reg::clusterAndScore(local, fine, options, reducer).metrics())
            if (name == "ami" || name == "nmi") values.emplace_back(name + "@k=" + std::to_string(k), toDouble(value));
        }
      }
      if (const auto& mi = config_.eval.mi) {
        reg::InformationBoundsOptions options;
        options.numClasses = data_.numClasses;
        options.sigma2 = mi->sigma2;
        options.fp64 = mi->precision == "fp64";
        const auto bounds = reg::informationBounds(local, labels, options, reducer);
        for (const auto& [name, value] : bounds.metrics()) values.emplace_back(name, toDouble(value));
      }
    }
  }
  return result;
}

}  // namespace repshape
