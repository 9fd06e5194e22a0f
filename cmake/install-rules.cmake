include(CMakePackageConfigHelpers)

set(PROCPOOL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/procpool"
    CACHE STRING "Where procpool's CMake package files are installed")

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS procpool EXPORT procpoolTargets)
install(EXPORT procpoolTargets NAMESPACE procpool:: DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})

configure_package_config_file(cmake/procpoolConfig.cmake.in
  "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
  INSTALL_DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})
# Before 1.0 a minor version may break the API, hence SameMinorVersion.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/procpoolConfig.cmake"
              "${PROJECT_BINARY_DIR}/procpoolConfigVersion.cmake"
        DESTINATION ${PROCPOOL_INSTALL_CMAKEDIR})
