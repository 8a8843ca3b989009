// A miniature training loop for the fault tests: every "step" injects the --fault (if it is this
// rank's) and then all-reduces a small buffer, like the trainer's statistics all-reduce.
//
//   fault_worker --fault rank=1,step=5,kind=stall --timeout 5 [--steps 20]

#include <repshape/distributed/Communicator.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  using namespace repshape;
  std::string fault;
  double timeout = 5.0;
  std::int64_t steps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--fault") == 0) fault = argv[i + 1];
    else if (std::strcmp(argv[i], "--timeout") == 0) timeout = std::stod(argv[i + 1]);
    else if (std::strcmp(argv[i], "--steps") == 0) steps = std::stoll(argv[i + 1]);
    // other flags (--tag, used by fault_test.sh to find leftover processes) are ignored
  }
  try {
    const dist::FaultSpec spec = dist::parseFault(fault);
    dist::CommOptions options;
    options.timeoutSeconds = timeout;
    const std::unique_ptr<dist::Communicator> comm = dist::makeCommunicator(options);
    for (std::int64_t step = 0; step < steps; ++step) {
      dist::maybeInjectFault(spec, comm->rank(), step);
      torch::Tensor stats = torch::full({16}, comm->rank() + 1.0, torch::kDouble);
      comm->allReduce(stats, dist::ReduceOp::Sum, "step.stats");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (comm->rank() == 0) std::printf("fault_worker: %lld steps done\n", static_cast<long long>(steps));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fault_worker: %s\n", e.what());
    return 1;
  }
  return 0;
}
