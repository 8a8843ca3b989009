#include "detail/IallreduceAlgorithm.h"

#include "detail/MpiWorld.h"

#include <cstring>
#include <string>

namespace repshape::dist::detail {
namespace {

constexpr const char* kControl = "coll_libnbc_iallreduce_algorithm";
constexpr std::int64_t kTwoRankRingBytes = 1024;
constexpr std::int64_t kRingBytes = 64 * 1024;

}  // namespace

IallreduceAlgorithm& IallreduceAlgorithm::instance() {
  static IallreduceAlgorithm* algorithm = new IallreduceAlgorithm();
  return *algorithm;
}

IallreduceAlgorithm::IallreduceAlgorithm() {
  MpiWorld::instance();  // MPI_Init first
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) return;
  int count = 0;
  if (MPI_T_cvar_get_num(&count) != MPI_SUCCESS) return;
  for (int index = 0; index < count; ++index) {
    char name[256];
    int nameLength = sizeof(name), verbosity = 0, binding = 0, scope = 0, descriptionLength = 0;
    MPI_Datatype type = MPI_DATATYPE_NULL;
    MPI_T_enum enumType = MPI_T_ENUM_NULL;
    if (MPI_T_cvar_get_info(index, name, &nameLength, &verbosity, &type, &enumType, nullptr,
                            &descriptionLength, &binding, &scope) != MPI_SUCCESS ||
        std::strcmp(name, kControl) != 0)
      continue;
    // A writable int bound to no object, still at libnbc's default: ours to set per call.
    if (type != MPI_INT || binding != MPI_T_BIND_NO_OBJECT || scope == MPI_T_SCOPE_CONSTANT ||
        scope == MPI_T_SCOPE_READONLY)
      return;
    MPI_T_cvar_handle handle = MPI_T_CVAR_HANDLE_NULL;
    int elements = 0;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &elements) != MPI_SUCCESS) return;
    int value = -1;
    if (elements != 1 || MPI_T_cvar_read(handle, &value) != MPI_SUCCESS || value != kLibnbcDefault) {
      MPI_T_cvar_handle_free(&handle);  // the user chose an algorithm: keep it
      return;
    }
    handle_ = handle;
    return;
  }
}

int IallreduceAlgorithm::choose(int worldSize, std::int64_t count, std::int64_t elementBytes) const {
  if (!active() || worldSize < 2 || count < worldSize) return kLibnbcDefault;
  return count * elementBytes >= (worldSize == 2 ? kTwoRankRingBytes : kRingBytes) ? kRing : kLibnbcDefault;
}

int IallreduceAlgorithm::start(void* data, int count, int elementBytes, MPI_Datatype type, MPI_Op op,
                               MPI_Comm comm, int worldSize, MPI_Request* request) const {
  const int algorithm = choose(worldSize, count, elementBytes);
  if (algorithm == kLibnbcDefault) return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, op, comm, request);
  int value = algorithm;
  REPSHAPE_MPI_CHECK(MPI_T_cvar_write(handle_, &value));
  const int rc = MPI_Iallreduce(MPI_IN_PLACE, data, count, type, op, comm, request);
  value = kLibnbcDefault;
  REPSHAPE_MPI_CHECK(MPI_T_cvar_write(handle_, &value));
  return rc;
}

}  // namespace repshape::dist::detail
