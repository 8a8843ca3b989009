# Common settings for every repshape target. LibTorch headers dominate compile time on a 2-core
# machine, so all targets share one precompiled header (built once by repshape_pch).
add_library(repshape_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch.cpp)

function(repshape_target_settings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(REPSHAPE_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  target_include_directories(${target} PRIVATE ${CMAKE_BINARY_DIR}/generated)
  target_link_libraries(${target} PRIVATE ${TORCH_LIBRARIES})
  target_include_directories(${target} SYSTEM PRIVATE ${TORCH_INCLUDE_DIRS})
  if(NOT target STREQUAL repshape_pch)
    target_precompile_headers(${target} REUSE_FROM repshape_pch)
  endif()
endfunction()

# Linking Torch gives the PCH the same compile definitions (GFLAGS_IS_A_DLL …) as its users.
target_link_libraries(repshape_pch PRIVATE ${TORCH_LIBRARIES})
target_include_directories(repshape_pch SYSTEM PRIVATE ${TORCH_INCLUDE_DIRS})
target_compile_options(repshape_pch PRIVATE -Wall -Wextra)
target_precompile_headers(repshape_pch PRIVATE <torch/torch.h> <vector> <string> <memory>)
