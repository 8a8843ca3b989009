#pragma once
// Slurm job arrays for a grid's cells (issue 10): sbatch scripts, the array-index → cell mapping,
// chunking below MaxArraySize. Pure text generation: nothing here runs Slurm, so it is testable
// without a cluster; `repshape slurm` (runner/src/Slurm.cpp) writes the files and calls sbatch.
//
// Files of one submission, RESULTS/slurm/<submission>/:
//   array-K.cells    the cells of array K, one per line: `cell-id<TAB>argument…` (arguments of
//                    `repshape`, each shell-quoted); task a runs lines [a·C, a·C + C) in order
//   array-K.sbatch   the batch script of array K (--array=0-(n-1)[%throttle])
// Slurm output: RESULTS/slurm/logs/<name>_%A_%a.out.

#include <cstdint>
#include <string>
#include <vector>

namespace repshape::jobs {

struct SlurmCell {
  std::string id;                     // the grid's cell id; its run directory is RESULTS/cells/<id>
  std::vector<std::string> arguments; // `repshape` arguments without --out, e.g. {"train", "c.toml", "--set", "k=v"}
};

struct SlurmOptions {
  std::string results;            // absolute results directory (shared by every node)
  std::string binary;             // absolute path of the repshape executable on the nodes
  std::string name = "repshape";  // job name
  int ranksPerCell = 1;           // srun tasks per cell (data-parallel ranks)
  int gpusPerRank = 0;            // --gpus-per-task; > 0 selects the NCCL backend on CUDA
  int cpusPerRank = 1;            // --cpus-per-task
  int cellsPerTask = 1;           // cells run one after another by one array task
  int throttle = 0;               // %N: at most N tasks of an array at once (0: no limit)
  std::string partition, time, account;
  std::vector<std::string> extra; // further "#SBATCH …" lines, verbatim
  int64_t maxArraySize = 1001;    // the cluster's MaxArraySize: array indices stay below it
  int warningSeconds = 120;       // --signal=B:USR2@seconds before the time limit
  std::string mpi = "pmix";       // srun --mpi=…
  bool retryFailed = false;       // the task reruns cells whose result says failed (else: finished)
};

struct SlurmArray {
  int index = 0;                  // K
  int tasks = 0;                  // array size n
  std::vector<SlurmCell> cells;   // in mapping order
  std::string cellsFile;          // RESULTS/slurm/<submission>/array-K.cells
  std::string scriptFile;         // RESULTS/slurm/<submission>/array-K.sbatch
  std::string cellsText, scriptText;
};

// Splits `cells` into arrays of at most maxArraySize tasks (cellsPerTask cells each) and renders
// their files under `submissionDir`. Throws std::invalid_argument on an empty list or bad options.
std::vector<SlurmArray> planArrays(const std::vector<SlurmCell>& cells, const SlurmOptions& options,
                                   const std::string& submissionDir);

// The batch script of one array (see the comments inside for what each task does).
std::string renderBatchScript(const SlurmArray& array, const SlurmOptions& options);

// MaxArraySize from the text of `scontrol show config`; `fallback` when absent.
int64_t parseMaxArraySize(const std::string& showConfig, int64_t fallback = 1001);

// POSIX shell single-quoting ('it'\''s').
std::string shellQuote(const std::string& word);

// Cell ids are path components: non-empty, no '/', no control characters, not "." or "..".
bool validCellId(const std::string& id);

}  // namespace repshape::jobs
