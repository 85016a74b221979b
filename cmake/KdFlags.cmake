# Compiler flags. The default is portable: -O3 with no -march, so a binary built on a login node runs
# on every node of the same architecture (x86-64 baseline, or any aarch64). The hot row kernels get
# run-time dispatch on x86 instead (KD_HOT_CLONES in include/kdstep/simd.h: an AVX2+FMA clone picked
# at load time when the CPU has it). KD_NATIVE=ON builds for the build machine's CPU only.
# docs/install.md ("Portable or native") has the measurement behind this.
option(KD_NATIVE "Build for this machine's CPU only (-march=native); the binary may die with an illegal instruction elsewhere" OFF)

add_compile_options(-Wall -Wextra -Wno-unused-parameter)
# Truncating long messages into fixed buffers is deliberate, so format-truncation is not a warning here.
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  add_compile_options(-Wno-format-truncation)
endif()
# clang reports a `#pragma omp simd` loop it could not vectorize for the target (the baseline x86-64 has
# no vector exp) as a warning; the loop is still correct, and the run-time clones vectorize it.
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_compile_options(-Wno-pass-failed)
endif()
if(KD_WERROR)
  add_compile_options(-Werror)
endif()
if(CMAKE_BUILD_TYPE STREQUAL "Release" OR CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo")
  add_compile_options(-O3)
endif()
if(KD_NATIVE)
  include(CheckCCompilerFlag)
  check_c_compiler_flag(-march=native KD_HAVE_MARCH_NATIVE)
  if(NOT KD_HAVE_MARCH_NATIVE)
    message(FATAL_ERROR "KD_NATIVE=ON but ${CMAKE_C_COMPILER} does not accept -march=native "
                        "(cross-compiling?). Configure without -DKD_NATIVE=ON for a portable build.")
  endif()
  add_compile_options(-march=native)
  # the run-time clones are pointless (and would only add size) when the whole build targets this CPU
  add_compile_definitions(KD_NO_CLONES)
endif()
if(KD_SANITIZE OR KD_FUZZ)
  # ifunc resolvers run before the sanitizer runtime is up; these builds check code, not speed
  add_compile_definitions(KD_NO_CLONES)
endif()
if(KD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(KD_FUZZ)
  # coverage instrumentation for the library; the fuzz targets themselves link libFuzzer
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
