# gradscope's optional distributed component (include/gradscope/dist/, docs/distributed.md):
# data-parallel training over MPI. Included once from the top-level CMakeLists.txt, after the
# tests, examples and benchmarks. Everything MPI lives here:
#   gradscope_dist / gradscope::dist   INTERFACE target: gradscope + MPI::MPI_CXX (installed and
#                                      exported as gradscope::dist when MPI is found)
#   test_dist, dist_failure_probe      tests/dist/, run under mpiexec by CTest
#   mnist_mlp_mpi                      examples/mnist_mlp.cpp with GRADSCOPE_WITH_MPI
#   bench_dist                         bench/dist/data_parallel.bench.cpp
# Without MPI nothing here is built; a CTest entry says the distributed tests were skipped.

option(GRADSCOPE_DIST "Build the MPI component (gradscope::dist) when MPI is found" ON)

# Installed in every case beside gradscopeConfig.cmake, which includes it: consumers ask for
# find_package(gradscope COMPONENTS dist) and link gradscope::dist, or learn why it is missing.
if(GRADSCOPE_INSTALL)
  set(_gradscope_dist_config_dir ${GRADSCOPE_CONFIG_DIR})  # beside gradscopeConfig.cmake
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/gradscopeDist.cmake
          DESTINATION ${_gradscope_dist_config_dir})
endif()

set(GRADSCOPE_DIST_FOUND OFF)
if(GRADSCOPE_DIST)
  find_package(MPI COMPONENTS CXX QUIET)
  if(MPI_CXX_FOUND)
    set(GRADSCOPE_DIST_FOUND ON)
  endif()
endif()

if(NOT GRADSCOPE_DIST_FOUND)
  if(GRADSCOPE_DIST)
    message(STATUS "gradscope: MPI not found: gradscope::dist, its tests, mnist_mlp_mpi and "
                   "bench_dist are not built (scripts/install-deps.sh installs OpenMPI)")
  endif()
  if(GRADSCOPE_DIST)
    set(_gradscope_dist_why "MPI was not found when configuring (apt-get install libopenmpi-dev openmpi-bin, or scripts/install-deps.sh)")
  else()
    set(_gradscope_dist_why "configured with -DGRADSCOPE_DIST=OFF")
  endif()
  if(GRADSCOPE_BUILD_TESTS)
    add_test(NAME dist_skipped
             COMMAND sh -c "echo 'tests/dist SKIPPED: ${_gradscope_dist_why}'; exit 77")
    set_tests_properties(dist_skipped PROPERTIES SKIP_RETURN_CODE 77 LABELS dist)
  endif()
  return()
endif()

add_library(gradscope_dist INTERFACE)
add_library(gradscope::dist ALIAS gradscope_dist)
set_target_properties(gradscope_dist PROPERTIES EXPORT_NAME dist)
target_link_libraries(gradscope_dist INTERFACE gradscope MPI::MPI_CXX)

# mpiexec command lines for our tests and benchmarks. Open MPI needs --oversubscribe to start more
# ranks than free cores (CI has 2) and refuses to run as root (as CI does) without
# --allow-run-as-root; MPICH needs neither.
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _gradscope_mpiexec_version
                ERROR_QUIET)
set(GRADSCOPE_MPIEXEC_FLAGS "")
if(_gradscope_mpiexec_version MATCHES "Open MPI|OpenRTE")
  list(APPEND GRADSCOPE_MPIEXEC_FLAGS --oversubscribe)
  execute_process(COMMAND id -u OUTPUT_VARIABLE _gradscope_uid OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  if(_gradscope_uid STREQUAL "0")
    list(APPEND GRADSCOPE_MPIEXEC_FLAGS --allow-run-as-root)
  endif()
endif()
message(STATUS "gradscope: MPI found (${MPIEXEC_EXECUTABLE}): gradscope::dist is built")

# The tests (tests/dist/): two ranks, each a few seconds at most.
if(GRADSCOPE_BUILD_TESTS AND TARGET gradscope_catch_main)
  find_package(Catch2 2 REQUIRED)
  find_package(nlohmann_json 3 CONFIG REQUIRED)  # the checkpoint test (io)
  add_executable(test_dist ${PROJECT_SOURCE_DIR}/tests/dist/data_parallel.mpi.cpp)
  target_link_libraries(test_dist PRIVATE gradscope_dist Catch2::Catch2 gradscope_project_options
                                          gradscope_catch_main nlohmann_json::nlohmann_json)
  add_executable(dist_failure_probe ${PROJECT_SOURCE_DIR}/tests/dist/failure_probe.cpp)
  target_link_libraries(dist_failure_probe PRIVATE gradscope_dist gradscope_project_options)
  set(_np ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${GRADSCOPE_MPIEXEC_FLAGS})
  add_test(NAME test_dist COMMAND ${_np} $<TARGET_FILE:test_dist> ${GRADSCOPE_TEST_SPEC})
  # Each scenario: mpiexec with a time limit, then the exit code and the output are checked.
  foreach(scenario IN ITEMS nan throw)
    add_test(NAME dist_failure_${scenario}
             COMMAND ${CMAKE_COMMAND} "-DCOMMAND=${_np};$<TARGET_FILE:dist_failure_probe>;${scenario}"
                     -DSCENARIO=${scenario}
                     -P ${PROJECT_SOURCE_DIR}/tests/dist/check_failure.cmake)
  endforeach()
  set_tests_properties(test_dist dist_failure_nan dist_failure_throw PROPERTIES
                       TIMEOUT 120 LABELS dist PROCESSORS 2)
  # Under ASan + UBSan too. Open MPI leaves allocations of its own at exit (some 3,000 blocks,
  # 110 KiB per rank): tests/dist/lsan.supp suppresses those of its libraries. For the
  # suppressions to see them, its plugins stay loaded (no dlclose at MPI_Finalize: otherwise
  # their frames are "<unknown module>") and stacks are unwound fully (the fast unwinder stops
  # in libraries built without frame pointers). Leaks of our code are still reported.
  if(GRADSCOPE_SANITIZE)
    set_tests_properties(test_dist dist_failure_nan dist_failure_throw PROPERTIES ENVIRONMENT
      "OMPI_MCA_mca_base_component_disable_dlclose=1;ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/dist/lsan.supp:print_suppressions=0")
  endif()
endif()

# mnist_mlp under mpiexec: the same source with its distributed hooks on.
if(GRADSCOPE_BUILD_EXAMPLES AND TARGET mnist_mlp)
  find_package(ZLIB REQUIRED)
  find_package(nlohmann_json 3 CONFIG REQUIRED)
  add_executable(mnist_mlp_mpi ${PROJECT_SOURCE_DIR}/examples/mnist_mlp.cpp)
  target_compile_definitions(mnist_mlp_mpi PRIVATE GRADSCOPE_WITH_MPI)
  target_link_libraries(mnist_mlp_mpi PRIVATE gradscope_dist gradscope_project_options ZLIB::ZLIB
                                              nlohmann_json::nlohmann_json)
  if(GRADSCOPE_BUILD_TESTS)
    add_test(NAME mnist_mlp_mpi_e2e
             COMMAND ${PROJECT_SOURCE_DIR}/tests/dist/mnist_mlp_mpi.sh
                     $<TARGET_FILE:mnist_mlp_mpi> ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                     ${GRADSCOPE_MPIEXEC_FLAGS})
    set_tests_properties(mnist_mlp_mpi_e2e PROPERTIES TIMEOUT 300 LABELS "dist;e2e" PROCESSORS 2)
  endif()
endif()

# The scaling benchmark: scripts/bench.sh --dist runs it with 1 and 2 ranks.
if(GRADSCOPE_BUILD_BENCHMARKS AND COMMAND gradscope_add_benchmark)
  find_package(benchmark REQUIRED)
  gradscope_add_benchmark(bench_dist ${PROJECT_SOURCE_DIR}/bench/dist/data_parallel.bench.cpp)
  target_link_libraries(bench_dist PRIVATE gradscope_dist)
endif()

if(GRADSCOPE_INSTALL)
  install(TARGETS gradscope_dist EXPORT gradscopeDistTargets)
  install(EXPORT gradscopeDistTargets NAMESPACE gradscope::
          DESTINATION ${_gradscope_dist_config_dir})
endif()
