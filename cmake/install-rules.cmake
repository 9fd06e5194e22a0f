include(CMakePackageConfigHelpers)

set(PROCPOOL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/procpool"
    CACHE STRING "Where procpool's CMake package files are installed")

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS procpool EXPORT procpoolTargets)
install(EXPORT procpoolTargets NAMESPACE procpool:: DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})
# procpool::mpi goes in a file of its own, read only when the mpi component is asked for, so
# find_package(procpool) looks for MPI only then.
if(TARGET procpool_mpi)
  install(TARGETS procpool_mpi EXPORT procpoolMpiTargets)
  install(EXPORT procpoolMpiTargets NAMESPACE procpool:: DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})
endif()

configure_package_config_file(cmake/procpoolConfig.cmake.in
  "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
  INSTALL_DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})
# Before 1.0 a minor version may break the API, hence SameMinorVersion.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
# procpool.cpp: the package builds procpool::compiled from it in the consumer's project, with the
# consumer's compiler and flags, so the package stays architecture-independent.
install(FILES "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
              "${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
              src/procpool.cpp
        DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})

# pkg-config file for Meson and Makefile users. Arch-independent, so it goes under the data
# directory next to the CMake package. Its paths are relative to its own location (pcfiledir),
# like the CMake package's, so the tree may be moved or unpacked anywhere.
set(PROCPOOL_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where procpool's pkg-config file is installed")
if(IS_ABSOLUTE "${PROCPOOL_INSTALL_PKGCONFIGDIR}")
  message(FATAL_ERROR "PROCPOOL_INSTALL_PKGCONFIGDIR must be relative to the install prefix, "
                      "not '${PROCPOOL_INSTALL_PKGCONFIGDIR}'")
endif()
# A made-up root: only the relative path between the two directories matters.
file(RELATIVE_PATH PROCPOOL_PC_TO_PREFIX "/root/${PROCPOOL_INSTALL_PKGCONFIGDIR}" "/root")
string(REGEX REPLACE "/$" "" PROCPOOL_PC_TO_PREFIX "${PROCPOOL_PC_TO_PREFIX}")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(PROCPOOL_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(PROCPOOL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(PROCPOOL_PC_EXTRA_LIBS "")
foreach(lib IN LISTS CMAKE_DL_LIBS)
  string(APPEND PROCPOOL_PC_EXTRA_LIBS " -l${lib}")
endforeach()
configure_file(cmake/procpool.pc.in "${PROJECT_BINARY_DIR}/procpool.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/procpool.pc" DESTINATION ${PROCPOOL_INSTALL_PKGCONFIGDIR})
