# Dependencies, found the way CMake finds them, so that Debian packages, Spack, EasyBuild and
# environment modules all work without hand-written .pc files (docs/install.md):
#   MPI, OpenMP   find_package (mpicc, or MPI_C_* variables)
#   HDF5          find_package(HDF5 COMPONENTS C) with HDF5_PREFER_PARALLEL: hdf5-config.cmake, h5pcc,
#                 or a search under HDF5_ROOT; pkg-config (hdf5-openmpi, hdf5-mpi, hdf5) as a fallback.
#                 It must be the MPI build (H5_HAVE_PARALLEL): a serial one is refused here.
#   BLAS          find_package(BLAS) with BLA_VENDOR=${KD_BLAS} (OpenBLAS by default; OpenBLASConfig.cmake,
#                 pkg-config openblas as fallbacks), plus cblas.h
#   the rest      pkg-config when it is there, else find_path/find_library (CMAKE_PREFIX_PATH, the
#                 include and library paths a module sets)
# Each gives an imported target kd::<name>.

find_package(MPI REQUIRED C)
find_package(OpenMP REQUIRED C)
find_package(Threads REQUIRED)
find_package(PkgConfig QUIET)
include(CheckSymbolExists)
include(CheckFunctionExists)

set(KD_DEPS_HINT "See docs/install.md for the apt, Spack and environment-modules lines.")

# kd_find_lib(<name> PC <module> HEADER <file> LIBS <names..> [SUFFIXES <dirs..>] DEB <pkg> SPACK <spec>)
function(kd_find_lib name)
  cmake_parse_arguments(A "" "PC;HEADER;DEB;SPACK" "LIBS;SUFFIXES" ${ARGN})
  if(TARGET kd::${name})
    return()
  endif()
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(KDPC_${name} QUIET IMPORTED_TARGET GLOBAL ${A_PC})
    if(KDPC_${name}_FOUND)
      add_library(kd::${name} ALIAS PkgConfig::KDPC_${name})
      message(STATUS "${name}: pkg-config ${A_PC} ${KDPC_${name}_VERSION}")
      return()
    endif()
  endif()
  find_path(KD_${name}_INCLUDE_DIR ${A_HEADER} PATH_SUFFIXES ${A_SUFFIXES})
  find_library(KD_${name}_LIBRARY NAMES ${A_LIBS})
  if(NOT KD_${name}_INCLUDE_DIR OR NOT KD_${name}_LIBRARY)
    message(FATAL_ERROR "${name} not found (header ${A_HEADER}: ${KD_${name}_INCLUDE_DIR}; library "
      "${A_LIBS}: ${KD_${name}_LIBRARY}). Install it: Debian/Ubuntu 'apt install ${A_DEB}', Spack "
      "'spack install ${A_SPACK}' (then 'spack load ${A_SPACK}'), or load its module; or point "
      "CMAKE_PREFIX_PATH at its install prefix. ${KD_DEPS_HINT}")
  endif()
  add_library(kd::${name} INTERFACE IMPORTED GLOBAL)
  set_target_properties(kd::${name} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${KD_${name}_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${KD_${name}_LIBRARY}")
  message(STATUS "${name}: ${KD_${name}_LIBRARY} (headers in ${KD_${name}_INCLUDE_DIR})")
endfunction()

# ---- HDF5 (parallel) ----
string(CONCAT KD_HDF5_SERIAL_MSG
  "kdstep writes its datasets from all MPI ranks at once (H5Pset_fapl_mpio), so it needs the MPI build "
  "of HDF5. Install it: Debian/Ubuntu 'apt install libhdf5-openmpi-dev' (the serial libhdf5-dev is not "
  "enough), Spack 'spack install hdf5+mpi', EasyBuild/modules: load the HDF5 module built with MPI "
  "(its h5pcc must exist). To pick a given install: -DHDF5_ROOT=<prefix> or "
  "-DHDF5_C_COMPILER_EXECUTABLE=<path>/h5pcc. ${KD_DEPS_HINT}")
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 COMPONENTS C)
if(HDF5_FOUND AND (HDF5_C_INCLUDE_DIRS OR HDF5_INCLUDE_DIRS OR TARGET hdf5::hdf5 OR TARGET hdf5-shared))
  if(TARGET hdf5::hdf5)
    set(KD_HDF5_TARGET hdf5::hdf5)
  elseif(TARGET hdf5-shared)
    set(KD_HDF5_TARGET hdf5-shared)
  else()
    set(KD_HDF5_TARGET hdf5)
  endif()
  get_target_property(KD_HDF5_INCLUDE_DIRS ${KD_HDF5_TARGET} INTERFACE_INCLUDE_DIRECTORIES)
  if(HDF5_DIR)
    set(KD_HDF5_HOW "find_package(HDF5) via its CMake config ${HDF5_DIR}")
  elseif(HDF5_C_COMPILER_EXECUTABLE)
    set(KD_HDF5_HOW "find_package(HDF5) via the compiler wrapper ${HDF5_C_COMPILER_EXECUTABLE}")
  else()
    set(KD_HDF5_HOW "find_package(HDF5) by search (HDF5_ROOT=${HDF5_ROOT})")
  endif()
elseif(HDF5_ROOT OR DEFINED ENV{HDF5_ROOT})
  message(FATAL_ERROR "No HDF5 found under HDF5_ROOT=${HDF5_ROOT}$ENV{HDF5_ROOT} (no hdf5-config.cmake, "
    "bin/h5pcc, or include/hdf5.h with lib/libhdf5 there). ${KD_HDF5_SERIAL_MSG}")
elseif(PKG_CONFIG_FOUND)
  pkg_search_module(KDPC_HDF5 IMPORTED_TARGET GLOBAL hdf5-openmpi hdf5-mpi hdf5)
  if(NOT KDPC_HDF5_FOUND)
    message(FATAL_ERROR "HDF5 not found (neither by find_package(HDF5) nor by pkg-config). ${KD_HDF5_SERIAL_MSG}")
  endif()
  set(KD_HDF5_TARGET PkgConfig::KDPC_HDF5)
  set(KD_HDF5_INCLUDE_DIRS ${KDPC_HDF5_INCLUDE_DIRS})
  set(KD_HDF5_HOW "pkg-config ${KDPC_HDF5_MODULE_NAME}")
else()
  message(FATAL_ERROR "HDF5 not found by find_package(HDF5), and pkg-config is not installed. ${KD_HDF5_SERIAL_MSG}")
endif()
# Parallel or not is decided by the header itself, whatever found it.
set(CMAKE_REQUIRED_INCLUDES ${KD_HDF5_INCLUDE_DIRS} ${MPI_C_INCLUDE_DIRS})
unset(KD_HDF5_IS_PARALLEL CACHE)
check_symbol_exists(H5_HAVE_PARALLEL "H5pubconf.h" KD_HDF5_IS_PARALLEL)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT KD_HDF5_IS_PARALLEL)
  message(FATAL_ERROR "The HDF5 found is serial: ${KD_HDF5_HOW}, headers in ${KD_HDF5_INCLUDE_DIRS} "
                      "(H5pubconf.h has no H5_HAVE_PARALLEL). ${KD_HDF5_SERIAL_MSG}")
endif()
add_library(kd::hdf5 INTERFACE IMPORTED GLOBAL)
set_target_properties(kd::hdf5 PROPERTIES INTERFACE_LINK_LIBRARIES ${KD_HDF5_TARGET})
message(STATUS "HDF5 (parallel): ${KD_HDF5_HOW}; headers in ${KD_HDF5_INCLUDE_DIRS}")

# ---- BLAS ----
# kdstep calls OpenBLAS's own API besides CBLAS (openblas_set_num_threads, openblas_get_corename,
# openblas_get_config): any BLAS named here must provide those (OpenBLAS itself, or a build that
# bundles it).
set(KD_BLAS "OpenBLAS" CACHE STRING "BLAS vendor for find_package(BLAS) (BLA_VENDOR): OpenBLAS, All, ...")
set(BLA_VENDOR ${KD_BLAS})
find_package(BLAS)
if(NOT BLAS_FOUND AND KD_BLAS STREQUAL "OpenBLAS")
  find_package(OpenBLAS CONFIG QUIET)
  if(OpenBLAS_FOUND)
    set(BLAS_LIBRARIES ${OpenBLAS_LIBRARIES})
    set(KD_CBLAS_HINT ${OpenBLAS_INCLUDE_DIRS})
    set(BLAS_FOUND TRUE)
  elseif(PKG_CONFIG_FOUND)
    pkg_check_modules(KDPC_OPENBLAS QUIET openblas)
    if(KDPC_OPENBLAS_FOUND)
      set(BLAS_LIBRARIES ${KDPC_OPENBLAS_LINK_LIBRARIES})
      set(KD_CBLAS_HINT ${KDPC_OPENBLAS_INCLUDE_DIRS})
      set(BLAS_FOUND TRUE)
    endif()
  endif()
endif()
if(NOT BLAS_FOUND)
  message(FATAL_ERROR "BLAS (vendor ${KD_BLAS}) not found. Install OpenBLAS: Debian/Ubuntu 'apt install "
    "libopenblas-dev', Spack 'spack install openblas', or load its module; or pick a vendor with "
    "-DKD_BLAS=<BLA_VENDOR>. ${KD_DEPS_HINT}")
endif()
# cblas.h: next to the library first (Debian keeps one per OpenBLAS flavour), then the usual places.
set(KD_CBLAS_SUFFIXES openblas openblas64 ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread
  ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp ${CMAKE_LIBRARY_ARCHITECTURE})
list(GET BLAS_LIBRARIES 0 KD_BLAS_LIB0)
get_filename_component(KD_BLAS_LIBDIR "${KD_BLAS_LIB0}" DIRECTORY)
get_filename_component(KD_BLAS_PREFIX "${KD_BLAS_LIBDIR}" DIRECTORY)
find_path(KD_CBLAS_INCLUDE_DIR cblas.h HINTS ${KD_CBLAS_HINT} ${KD_BLAS_PREFIX}/include PATH_SUFFIXES ${KD_CBLAS_SUFFIXES})
if(NOT KD_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "cblas.h not found for the BLAS at ${BLAS_LIBRARIES}. Set -DKD_CBLAS_INCLUDE_DIR=<dir>. ${KD_DEPS_HINT}")
endif()
set(CMAKE_REQUIRED_LIBRARIES ${BLAS_LIBRARIES} Threads::Threads m)
unset(KD_BLAS_HAS_OPENBLAS_API CACHE)
check_function_exists(openblas_set_num_threads KD_BLAS_HAS_OPENBLAS_API)
unset(CMAKE_REQUIRED_LIBRARIES)
if(NOT KD_BLAS_HAS_OPENBLAS_API)
  message(FATAL_ERROR "The BLAS found (${BLAS_LIBRARIES}) has no openblas_set_num_threads: kdstep needs "
    "OpenBLAS (it sets OpenBLAS's threads and kernel family itself). Use -DKD_BLAS=OpenBLAS and install "
    "it. ${KD_DEPS_HINT}")
endif()
add_library(kd::blas INTERFACE IMPORTED GLOBAL)
set_target_properties(kd::blas PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${KD_CBLAS_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${BLAS_LIBRARIES}")
message(STATUS "BLAS (${KD_BLAS}): ${BLAS_LIBRARIES}; cblas.h in ${KD_CBLAS_INCLUDE_DIR}")

# ---- the others ----
kd_find_lib(jansson  PC jansson        HEADER jansson.h       LIBS jansson      DEB libjansson-dev       SPACK jansson)
kd_find_lib(curl     PC libcurl        HEADER curl/curl.h     LIBS curl         DEB libcurl4-openssl-dev SPACK curl)
kd_find_lib(yaml     PC yaml-0.1       HEADER yaml.h          LIBS yaml         DEB libyaml-dev          SPACK libyaml)
kd_find_lib(mhd      PC libmicrohttpd  HEADER microhttpd.h    LIBS microhttpd   DEB libmicrohttpd-dev    SPACK libmicrohttpd)
kd_find_lib(utf8proc PC libutf8proc    HEADER utf8proc.h      LIBS utf8proc     DEB libutf8proc-dev      SPACK utf8proc)
kd_find_lib(pcre2    PC libpcre2-8     HEADER pcre2.h         LIBS pcre2-8      DEB libpcre2-dev         SPACK pcre2)
kd_find_lib(cunit    PC cunit          HEADER CUnit/CUnit.h   LIBS cunit        DEB libcunit1-dev        SPACK cunit)
