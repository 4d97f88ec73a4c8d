# Included by the installed gradscopeConfig.cmake: the optional component gradscope::dist (MPI).
# find_package(gradscope COMPONENTS dist) finds MPI (CMake's FindMPI, C++) and defines
# gradscope::dist; without the component, MPI is not looked for. The component is missing when
# gradscope was installed from a build without MPI, or when MPI is not found here.
if("dist" IN_LIST ${CMAKE_FIND_PACKAGE_NAME}_FIND_COMPONENTS)
  set(${CMAKE_FIND_PACKAGE_NAME}_dist_FOUND FALSE)
  if(NOT EXISTS "${CMAKE_CURRENT_LIST_DIR}/gradscopeDistTargets.cmake")
    set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE
        "gradscope was installed without its MPI component (no MPI when it was built)")
  else()
    find_package(MPI QUIET COMPONENTS CXX)
    if(MPI_CXX_FOUND)
      include("${CMAKE_CURRENT_LIST_DIR}/gradscopeDistTargets.cmake")
      set(${CMAKE_FIND_PACKAGE_NAME}_dist_FOUND TRUE)
    else()
      set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE
          "gradscope::dist needs MPI (C++), which was not found (Debian: libopenmpi-dev)")
    endif()
  endif()
endif()
