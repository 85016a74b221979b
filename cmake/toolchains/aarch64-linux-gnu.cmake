# Cross-compiling kdstep for aarch64 Linux with Debian's cross gcc (gcc-aarch64-linux-gnu) against a
# sysroot that holds the :arm64 builds of the dependencies (tests/cross/aarch64.sh makes one from
# Debian's packages). Usage:
#   KD_SYSROOT=/path/to/sysroot cmake -S . -B build-arm64 \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Tests run through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so `ctest` works on an x86 host.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

if(NOT KD_SYSROOT)
  set(KD_SYSROOT "$ENV{KD_SYSROOT}")
endif()
if(NOT KD_SYSROOT OR NOT EXISTS "${KD_SYSROOT}/usr/include")
  message(FATAL_ERROR "Set KD_SYSROOT (environment or -DKD_SYSROOT=) to an aarch64 sysroot with kdstep's "
                      "dependencies in it (tests/cross/aarch64.sh builds one); got '${KD_SYSROOT}'.")
endif()
set(KD_SYSROOT "${KD_SYSROOT}" CACHE PATH "aarch64 sysroot (kept for re-runs of cmake)")
set(ENV{KD_SYSROOT} "${KD_SYSROOT}")   # for try_compile, which re-reads this file
set(CMAKE_SYSROOT "${KD_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${KD_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# the dependencies' own dependencies (libmpi -> libopen-pal, ...) are resolved inside the sysroot
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${KD_SYSROOT}/usr/lib/aarch64-linux-gnu -Wl,-rpath-link,${KD_SYSROOT}/usr/lib/aarch64-linux-gnu/openmpi/lib")

# pkg-config, when there, reads only the sysroot's .pc files
set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_LIBDIR} "${KD_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${KD_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${KD_SYSROOT}")

# MPI: the host's mpicc describes the host's MPI, so name the sysroot's Open MPI directly.
set(MPI_SKIP_COMPILER_WRAPPER TRUE CACHE BOOL "")
set(MPI_C_HEADER_DIR "${KD_SYSROOT}/usr/lib/aarch64-linux-gnu/openmpi/include" CACHE PATH "")
set(MPI_C_LIB_NAMES mpi CACHE STRING "")
set(MPI_mpi_LIBRARY "${KD_SYSROOT}/usr/lib/aarch64-linux-gnu/openmpi/lib/libmpi.so" CACHE FILEPATH "")
# OpenBLAS: /usr/lib/<triplet>/libopenblas.so is an alternatives link that only an install creates
list(APPEND CMAKE_LIBRARY_PATH /usr/lib/aarch64-linux-gnu/openblas-pthread)
# HDF5: Debian keeps each flavour as an install prefix; no h5pcc for this architecture on the host.
set(HDF5_ROOT "/usr/lib/aarch64-linux-gnu/hdf5/openmpi" CACHE PATH "")

find_program(KD_QEMU_AARCH64 qemu-aarch64)
if(KD_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${KD_QEMU_AARCH64};-L;${KD_SYSROOT}")
endif()
