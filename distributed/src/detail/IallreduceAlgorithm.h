#pragma once
// The schedule of one in-place MPI_Iallreduce, chosen per call through Open MPI's MPI_T control
// variable `coll_libnbc_iallreduce_algorithm`.
//
// Why: libnbc (Open MPI's non-blocking collectives) builds every in-place MPI_Iallreduce, and every
// one on fewer than 4 ranks, as a binomial reduce to rank 0 followed by a binomial broadcast: each
// byte crosses the link twice, one direction at a time, while the blocking MPI_Allreduce would use
// a ring. Its ring (reduce-scatter, then all-gather: every rank sends and receives 2(W−1)/W of the
// buffer at once) is the bandwidth-optimal schedule. Measured here (2 ranks, one per core, vader
// shared memory with CMA, min of 300, in place): 131 000 floats (the Choi MLP's gradients)
// 122 µs binomial vs 71 µs ring; 2 000 floats 8.7 vs 2.9 µs; 5 floats 0.6 vs 0.7 µs
// (tests/bench/bench_collectives --algorithms).
//
// The choice depends only on the world size and the buffer's bytes, which every rank of a
// collective shares, so all ranks build the same schedule. An algorithm fixed by the user
// (OMPI_MCA_coll_libnbc_iallreduce_algorithm, mca-params.conf) is never overridden; without the
// control (another MPI, or a component other than libnbc) the call is a plain MPI_Iallreduce.

#include <mpi.h>

#include <cstdint>

namespace repshape::dist::detail {

class IallreduceAlgorithm {
 public:
  // libnbc's numbering: 0 lets libnbc decide, 1 is the ring.
  static constexpr int kLibnbcDefault = 0;
  static constexpr int kRing = 1;

  // Looks the control up (after MPI_Init); leaked like MpiWorld.
  static IallreduceAlgorithm& instance();

  // Whether repshape chooses (the control exists and the user left it at 0).
  bool active() const { return handle_ != nullptr; }
  // The algorithm an in-place all-reduce of `count` elements of `elementBytes` on `worldSize`
  // ranks gets: the ring at two ranks from 1 KiB (measured above) and at more ranks from 64 KiB
  // (libnbc's own threshold for its ring when not in place), with at least one element per rank;
  // otherwise libnbc's choice. kLibnbcDefault when not active().
  int choose(int worldSize, std::int64_t count, std::int64_t elementBytes) const;
  // MPI_Iallreduce(MPI_IN_PLACE, data, count, …) built under choose(worldSize, count, elementBytes);
  // returns the MPI error code. libnbc reads the control when it builds the schedule, inside
  // this call, so it is reset before returning.
  int start(void* data, int count, int elementBytes, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
            int worldSize, MPI_Request* request) const;

 private:
  IallreduceAlgorithm();
  MPI_T_cvar_handle handle_ = nullptr;
};

}  // namespace repshape::dist::detail
