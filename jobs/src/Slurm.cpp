#include <repshape/jobs/Slurm.h>

#include <regex>
#include <sstream>
#include <stdexcept>

namespace repshape::jobs {

namespace {

// What every array task does (the body of the batch script, after the #SBATCH lines and the
// variables): run its cells one after another with srun, skip finished ones, resume checkpointed
// ones, and turn Slurm's warning signal (USR2, --signal=B:USR2@s) into a checkpoint + requeue.
// USR1 is left alone: NCCL uses it.
constexpr const char* kTaskBody = R"BODY(
# A cell is finished when its result.json holds a final status (SPEC §7): ok, diverged, failed
# (failed cells run again when retry_failed=1). preempted / interrupted cells resume.
finished() {
  local status
  status=$(grep -o '"status" *: *"[a-z]*"' "$1/result.json" 2>/dev/null | head -n 1 | sed 's/.*"\([a-z]*\)"$/\1/')
  case "$status" in
    ok | diverged) return 0 ;;
    failed) [ "$retry_failed" = 1 ] && return 1 || return 0 ;;
    *) return 1 ;;
  esac
}

# Slurm sends USR2 to this shell only (B:); srun forwards it to every rank, the ranks agree on a
# stop step, checkpoint and exit 75; then this task requeues itself and resumes on restart.
step_pid=""
preempted=0
forward_usr2() {
  preempted=1
  echo "repshape-slurm: USR2 received, forwarding to the ranks"
  [ -n "$step_pid" ] && kill -USR2 "$step_pid" 2>/dev/null
}
trap forward_usr2 USR2

task_id=${SLURM_ARRAY_TASK_ID:-0}
first=$((task_id * cells_per_task))
echo "repshape-slurm: job ${SLURM_JOB_ID:-?} (array ${SLURM_ARRAY_JOB_ID:-?}_$task_id), restart ${SLURM_RESTART_COUNT:-0}, on $(hostname)"
status_all=0
for ((i = first; i < first + cells_per_task; ++i)); do
  line=$(sed -n "$((i + 1))p" "$cells_file")
  [ -n "$line" ] || break
  id=${line%%$'\t'*}
  out=$results/cells/$id
  if finished "$out"; then
    echo "repshape-slurm: cell $id finished earlier, skipped"
    continue
  fi
  eval "args=(${line#*$'\t'})"
  if [ "${args[0]}" = train ]; then
    mode=()
    if compgen -G "$out/checkpoints/step-*/DONE" >/dev/null; then
      mode=(--resume)
    elif [ -e "$out" ]; then
      mode=(--overwrite)  # an earlier attempt died before its first checkpoint: start over
    fi
    echo "repshape-slurm: cell $id: srun -n $ranks $repshape ${args[*]} --out $out ${mode[*]}"
    srun --ntasks="$ranks" --mpi="$mpi" "${srun_gpu[@]}" "$repshape" "${args[@]}" --out "$out" "${mode[@]}" &
  else
    # A phase-2 cell: `repshape grid SPEC --cell ID` selects its value and launches the ranks itself.
    echo "repshape-slurm: cell $id: $repshape ${args[*]}"
    "$repshape" "${args[@]}" &
  fi
  step_pid=$!
  # A trapped signal interrupts `wait`; wait again until the step has really ended.
  while :; do
    wait "$step_pid"
    rc=$?
    kill -0 "$step_pid" 2>/dev/null || break
  done
  step_pid=""
  echo "repshape-slurm: cell $id exited with $rc"
  if [ "$rc" = 75 ] || [ "$preempted" = 1 ]; then
    echo "repshape-slurm: preempted: requeueing ${SLURM_JOB_ID:-}"
    scontrol requeue "${SLURM_JOB_ID}"
    exit 75
  fi
  if [ "$rc" != 0 ] && ! grep -q '"status"' "$out/result.json" 2>/dev/null; then
    # srun ended every rank (one died, e.g. kill -9) before rank 0 could record it: the cell failed.
    mkdir -p "$out"
    printf '{"status":"failed","reason":"srun exited with %s before any rank wrote result.json (a rank died); rerun resumes from the last checkpoint","exit_code":%s}\n' \
      "$rc" "$rc" >"$out/result.json.tmp.$$" && mv "$out/result.json.tmp.$$" "$out/result.json"
  fi
  [ "$rc" = 0 ] || status_all=$rc
done
exit "$status_all"
)BODY";

}  // namespace

std::string shellQuote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,/:=@+%") ==
                           std::string::npos)
    return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

bool validCellId(const std::string& id) {
  if (id.empty() || id == "." || id == "..") return false;
  for (unsigned char c : id)
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  return true;
}

int64_t parseMaxArraySize(const std::string& showConfig, int64_t fallback) {
  static const std::regex line(R"(^\s*MaxArraySize\s*=\s*(\d+))", std::regex::multiline);
  std::smatch match;
  if (std::regex_search(showConfig, match, line)) return std::stoll(match[1].str());
  return fallback;
}

std::string renderBatchScript(const SlurmArray& array, const SlurmOptions& o) {
  std::ostringstream s;
  s << "#!/bin/bash\n";
  s << "#SBATCH --job-name=" << o.name << "\n";
  s << "#SBATCH --array=0-" << (array.tasks - 1);
  if (o.throttle > 0) s << "%" << o.throttle;
  s << "\n#SBATCH --ntasks=" << o.ranksPerCell << "\n";
  s << "#SBATCH --cpus-per-task=" << o.cpusPerRank << "\n";
  if (o.gpusPerRank > 0) s << "#SBATCH --gpus-per-task=" << o.gpusPerRank << "\n";
  s << "#SBATCH --output=" << o.results << "/slurm/logs/" << o.name << "_%A_%a.out\n";
  s << "#SBATCH --open-mode=append\n";
  s << "#SBATCH --signal=B:USR2@" << o.warningSeconds << "\n";
  s << "#SBATCH --requeue\n";
  if (!o.partition.empty()) s << "#SBATCH --partition=" << o.partition << "\n";
  if (!o.time.empty()) s << "#SBATCH --time=" << o.time << "\n";
  if (!o.account.empty()) s << "#SBATCH --account=" << o.account << "\n";
  for (const auto& line : o.extra) s << line << "\n";
  s << "# Generated by `repshape slurm` (array " << array.index << ": " << array.cells.size() << " cells, "
    << o.cellsPerTask << " per task). Task a runs lines [a*" << o.cellsPerTask << ", a*" << o.cellsPerTask
    << "+" << o.cellsPerTask << ") of cells_file.\n";
  s << "set -uo pipefail\n";
  s << "repshape=" << shellQuote(o.binary) << "\n";
  s << "results=" << shellQuote(o.results) << "\n";
  s << "cells_file=" << shellQuote(array.cellsFile) << "\n";
  s << "cells_per_task=" << o.cellsPerTask << "\n";
  s << "ranks=" << o.ranksPerCell << "\n";
  s << "mpi=" << shellQuote(o.mpi) << "\n";
  s << "retry_failed=" << (o.retryFailed ? 1 : 0) << "\n";
  s << "srun_gpu=(";
  if (o.gpusPerRank > 0) s << "--gpus-per-task=" << o.gpusPerRank;
  s << ")\n";
  s << kTaskBody;
  return s.str();
}

std::vector<SlurmArray> planArrays(const std::vector<SlurmCell>& cells, const SlurmOptions& o,
                                   const std::string& submissionDir) {
  if (cells.empty()) throw std::invalid_argument("no cells to submit");
  if (o.ranksPerCell < 1) throw std::invalid_argument("--ranks-per-cell must be >= 1, got " + std::to_string(o.ranksPerCell));
  if (o.cellsPerTask < 1) throw std::invalid_argument("--cells-per-task must be >= 1, got " + std::to_string(o.cellsPerTask));
  if (o.gpusPerRank < 0) throw std::invalid_argument("--gpus-per-rank must be >= 0, got " + std::to_string(o.gpusPerRank));
  if (o.throttle < 0) throw std::invalid_argument("--throttle must be >= 0, got " + std::to_string(o.throttle));
  if (o.maxArraySize < 1) throw std::invalid_argument("MaxArraySize must be >= 1, got " + std::to_string(o.maxArraySize));
  for (const auto& cell : cells)
    if (!validCellId(cell.id)) throw std::invalid_argument("cell id '" + cell.id + "' cannot be a directory name");

  // Array indices run 0..n-1 and must stay below MaxArraySize: at most maxArraySize tasks each.
  const int64_t cellsPerArray = o.maxArraySize * o.cellsPerTask;
  std::vector<SlurmArray> arrays;
  for (std::size_t begin = 0; begin < cells.size(); begin += static_cast<std::size_t>(cellsPerArray)) {
    SlurmArray array;
    array.index = static_cast<int>(arrays.size());
    const std::size_t end = std::min(cells.size(), begin + static_cast<std::size_t>(cellsPerArray));
    array.cells.assign(cells.begin() + static_cast<long>(begin), cells.begin() + static_cast<long>(end));
    array.tasks = static_cast<int>((array.cells.size() + static_cast<std::size_t>(o.cellsPerTask) - 1) /
                                   static_cast<std::size_t>(o.cellsPerTask));
    const std::string stem = submissionDir + "/array-" + std::to_string(array.index);
    array.cellsFile = stem + ".cells";
    array.scriptFile = stem + ".sbatch";
    for (const auto& cell : array.cells) {
      array.cellsText += cell.id + "\t";
      for (std::size_t i = 0; i < cell.arguments.size(); ++i)
        array.cellsText += (i ? " " : "") + shellQuote(cell.arguments[i]);
      array.cellsText += "\n";
    }
    array.scriptText = renderBatchScript(array, o);
    arrays.push_back(std::move(array));
  }
  return arrays;
}

}  // namespace repshape::jobs
