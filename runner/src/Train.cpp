// `repshape train` and `repshape version`: validate everything (arguments, config, data) before any
// work starts or anything is written, then train on however many ranks mpirun started.
#include "Commands.h"
#include "Config.h"
#include "OutputFiles.h"
#include "Trainer.h"
#include "data/Data.h"

#include <repshape/BuildInfo.h>
#include <repshape/distributed/Communicator.h>

#include <torch/version.h>

#include <cstdio>
#include <cstdlib>

#include <dlfcn.h>
#include <filesystem>
#include <iostream>

namespace repshape {

namespace {

constexpr const char* kTrainUsage =
    "usage: repshape train CONFIG.toml [--set section.key=value]... [--out DIR] [--fault SPEC]\n"
    "  --set section.key=value  override one config key (value in TOML syntax; bare words are strings;\n"
    "                           regularizer.N.key addresses the N-th [[regularizer]])\n"
    "  --out DIR                output directory (default runs/<config name>)\n"
    "  --fault rank=R,step=S,kind=crash|stall   inject a fault (tests of the failure paths)\n"
    "  --dump-gradients FILE    write the summed parameter gradients of step 1 (tests of SPEC §4)\n";

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  std::string fault;
  std::string gradientDump;
};

// Rank as told by the launcher, before MPI is initialised: only rank 0 prints input errors.
int launcherRank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

int inputError(const std::string& message) {
  if (launcherRank() == 0) std::fprintf(stderr, "repshape: error: %s\n", message.c_str());
  return 2;
}

bool parseArgs(int argc, char** argv, TrainArgs& args, std::string& error) {
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        error = std::string(flag) + " needs a value";
        return nullptr;
      }
      return argv[++i];
    };
    if (arg == "--set") {
      const char* v = value("--set");
      if (!v) return false;
      args.overrides.emplace_back(v);
    } else if (arg == "--out") {
      const char* v = value("--out");
      if (!v) return false;
      args.out = v;
    } else if (arg == "--fault") {
      const char* v = value("--fault");
      if (!v) return false;
      args.fault = v;
    } else if (arg == "--dump-gradients") {
      const char* v = value("--dump-gradients");
      if (!v) return false;
      args.gradientDump = v;
    } else if (arg.rfind("--", 0) == 0) {
      error = "unknown option " + arg;
      return false;
    } else if (args.config.empty()) {
      args.config = arg;
    } else {
      error = "unexpected argument " + arg + " (one config file only)";
      return false;
    }
  }
  if (args.config.empty()) {
    error = "missing CONFIG.toml";
    return false;
  }
  if (args.out.empty()) args.out = "runs/" + std::filesystem::path(args.config).stem().string();
  return true;
}

// ATen's set_num_threads does not reach OpenBLAS's own thread pool, which defaults to every core:
// on small per-step GEMMs those threads contend with the other ranks (measured: the Choi MLP step
// 1.6x faster with one BLAS thread). Looked up at run time so other BLAS builds still link.
void setBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

dist::Backend backendOf(const std::string& name) {
  if (name == "single") return dist::Backend::Single;
  if (name == "mpi") return dist::Backend::Mpi;
  if (name == "nccl") return dist::Backend::Nccl;
  return dist::Backend::Auto;
}

}  // namespace

int runVersion() {
  std::printf("repshape %s (commit %s)\nlibtorch %d.%d.%d, nccl backend %s\n", kVersion, kGitCommit,
              TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, kWithNccl ? "built" : "not built");
  return 0;
}

int runTrain(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kTrainUsage, stdout);
      return 0;
    }
  }
  TrainArgs args;
  std::string argError;
  if (!parseArgs(argc, argv, args, argError)) {
    if (launcherRank() == 0) std::fputs(kTrainUsage, stderr);
    return inputError(argError);
  }

  // Everything the user gave is checked before any work starts and before DIR exists.
  Config config;
  data::DataSplits data;
  dist::FaultSpec fault;
  try {
    config = loadConfig(args.config, args.overrides);
    fault = dist::parseFault(args.fault);
    torch::set_num_threads(static_cast<int>(config.train.threads));
    setBlasThreads(static_cast<int>(config.train.threads));
    data = data::loadData(config.data, config.train.seed);
  } catch (const ConfigError& e) {
    return inputError(e.what());
  } catch (const std::invalid_argument& e) {  // --fault text
    return inputError(e.what());
  }
  if (data.numClasses < 1) return inputError(args.config + ": data: the source has no classes");

  std::unique_ptr<dist::Communicator> comm;
  try {
    dist::CommOptions options;
    options.backend = backendOf(config.distributed.backend);
    options.timeoutSeconds = config.distributed.timeoutSeconds;
    comm = dist::makeCommunicator(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape[rank %d]: cannot start the communicator: %s\n", launcherRank(), e.what());
    return 1;
  }

  try {
    if (comm->rank() == 0) {
      createDirectories(args.out);
      const std::string resolved = toToml(config);
      writeFileAtomically(args.out + "/config.resolved.toml", resolved);
      std::printf("repshape %s: %s on %d rank(s) [%s], %s: %lld train / %lld validation / %lld test samples\n",
                  kVersion, args.config.c_str(), comm->size(), comm->backendName().c_str(),
                  data.description.c_str(), static_cast<long long>(data.train.size()),
                  static_cast<long long>(data.validation.size()), static_cast<long long>(data.test.size()));
      std::fflush(stdout);
    }
    Trainer trainer(config, data, *comm);
    trainer.run(args.out, fault.enabled() ? &fault : nullptr, args.gradientDump);
    if (comm->rank() == 0) std::printf("repshape: wrote %s/{config.resolved.toml,steps.jsonl,result.json}\n", args.out.c_str());
  } catch (const std::exception& e) {
    const std::string message = "repshape[rank " + std::to_string(comm->rank()) + "]: error: " + e.what();
    if (comm->size() > 1) comm->abort(1, message);  // never leave the other ranks waiting
    std::fprintf(stderr, "%s\n", message.c_str());
    return 1;
  }
  return 0;
}

}  // namespace repshape
