// bench_metrics: the cost of Prometheus monitoring on a training step (issue 11, target <= 2 %).
// One step of the Choi MNIST MLP (784 -> 6x100 ReLU -> 10, batch 100, Adam, one thread) with and
// without MetricsExporter::onStep at EVERY step (train.log_every = 1, the worst case; the record
// holds the host values the trainer already has), blocks interleaved so drift and noise hit both
// sides, medians of the blocks. A background thread scrapes /metrics once a second, as a
// Prometheus would (it usually scrapes every 15 s). Not a test: run by hand,
//   build/tests/bench/bench_metrics [--blocks 40] [--steps 50]
#include "MetricsExporter.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// GET /metrics and discard the page (the cost is on the exporter's serving thread).
void scrape(const std::string& address) {
  const auto colon = address.rfind(':');
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
    ::send(fd, request.data(), request.size(), 0);
    char buffer[8192];
    while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
    }
  }
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  int blocks = 40, steps = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--blocks")) blocks = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
  }
  torch::set_num_threads(1);
  torch::manual_seed(0);
  std::vector<torch::nn::Linear> layers;
  for (int64_t in = 784, i = 0; i < 7; ++i, in = 100) layers.emplace_back(in, i == 6 ? 10 : 100);
  std::vector<torch::Tensor> parameters;
  for (auto& l : layers)
    for (auto& p : l->parameters()) parameters.push_back(p);
  torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(1e-4));
  const torch::Tensor x = torch::randn({100, 784});
  const torch::Tensor y = torch::randint(0, 10, {100});
  auto step = [&] {
    torch::Tensor h = x;
    for (std::size_t i = 0; i + 1 < layers.size(); ++i) h = torch::relu(layers[i]->forward(h));
    const torch::Tensor loss = torch::nn::functional::cross_entropy(layers.back()->forward(h), y);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  };

  repshape::MetricsOptions options;
  options.listen = "127.0.0.1:0";
  options.grid = "bench";
  options.cell = "choi-mlp";
  repshape::MetricsExporter exporter(options, 0);
  repshape::RunInfo info;
  info.backend = "single";
  info.totalSteps = int64_t(blocks) * steps;
  exporter.onStart(info);
  repshape::StepRecord record;
  record.totalSteps = info.totalSteps;
  record.penalties = {{"cw-cr@h5", 0.5}};
  record.weights = {{"cw-cr@h5", 0.1}};
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop) {
      scrape(exporter.boundAddress());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });

  for (int i = 0; i < 20; ++i) step();  // warm-up
  std::vector<double> off, on;
  int64_t done = 0;
  for (int b = 0; b < 2 * blocks; ++b) {
    const bool metrics = b % 2 == 1;
    const auto start = Clock::now();
    for (int s = 0; s < steps; ++s) {
      step();
      if (metrics) {
        record.step = ++done;
        record.loss = record.taskLoss = 1.0 / static_cast<double>(done);
        record.stepSeconds = 0.001;
        exporter.onStep(record);
      }
    }
    (metrics ? on : off).push_back(std::chrono::duration<double>(Clock::now() - start).count() / steps);
  }
  stop = true;
  scraper.join();
  const double offStep = median(off), onStep = median(on);
  std::printf("bench_metrics: Choi MLP step, batch 100, 1 thread, onStep every step, %d x %d steps per side\n",
              blocks, steps);
  std::printf("  metrics off: %.1f us/step\n  metrics on:  %.1f us/step\n  ratio on/off: %.4f (%+.2f %%)\n",
              offStep * 1e6, onStep * 1e6, onStep / offStep, 100.0 * (onStep / offStep - 1.0));

  // The exporter's own cost per onStep call, without a training step around it.
  const auto start = Clock::now();
  const int calls = 20000;
  for (int i = 0; i < calls; ++i) {
    record.step = ++done;
    exporter.onStep(record);
  }
  std::printf("  onStep alone: %.2f us/call\n",
              std::chrono::duration<double>(Clock::now() - start).count() / calls * 1e6);
  return 0;
}
