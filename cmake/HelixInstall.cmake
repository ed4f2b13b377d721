# `cmake --install build [--prefix DIR]`: the executables (helix-bench, helix-micro; with CUDA
# also helix-kernel-bench) into bin/,
# and a CMake package for other projects, helix-benchConfig.cmake under lib/cmake/helix-bench/:
#   find_package(helix-bench 0.1 CONFIG REQUIRED)
#   target_link_libraries(my_tool PRIVATE helix::analytic)  # hardware profiles, the cost model,
#                                                           # design space; with helix::layouts
#   helix::layouts (model specs, layouts, rank shards, schedules), helix::common (element types,
#   collectives), helix::kernels (CPU reference kernels), helix::comm (MPI communicator, error
#   handling), helix::helix-bench and helix::helix-micro (imported executables, e.g. for add_test)
# Headers install under include/helix-bench/ and keep their paths (#include "layouts/layout.hpp").
# tests/install/consumer is a project built against an installed tree by the test below.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(HELIX_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/helix-bench)
set(HELIX_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/helix-bench)

# The libraries' include directory is the source root in the build tree and the installed
# include folder for consumers.
foreach(target helix_common helix_layouts helix_kernels helix_comm)
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
    "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>;$<INSTALL_INTERFACE:${HELIX_INSTALL_INCLUDEDIR}>")
endforeach()
set_target_properties(helix_common PROPERTIES EXPORT_NAME common)
set_target_properties(helix_layouts PROPERTIES EXPORT_NAME layouts)
set_target_properties(helix_analytic PROPERTIES EXPORT_NAME analytic)
set_target_properties(helix_kernels PROPERTIES EXPORT_NAME kernels)
set_target_properties(helix_comm PROPERTIES EXPORT_NAME comm)
set_target_properties(helix_warnings PROPERTIES EXPORT_NAME warnings)  # link-only, no options

install(TARGETS helix-bench helix-micro EXPORT helix-benchTargets
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET helix-kernel-bench)  # CUDA builds: the Hopper kernels' benchmark (not exported)
  install(TARGETS helix-kernel-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(TARGETS helix_common helix_layouts helix_analytic helix_kernels helix_comm helix_warnings
        EXPORT helix-benchTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(dir common layouts analytic kernels comm)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${HELIX_INSTALL_INCLUDEDIR}/${dir}
          FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh" EXCLUDE)
endforeach()
install(EXPORT helix-benchTargets NAMESPACE helix:: DESTINATION ${HELIX_INSTALL_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/helix-benchConfig.cmake.in
  ${PROJECT_BINARY_DIR}/helix-benchConfig.cmake INSTALL_DESTINATION ${HELIX_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/helix-benchConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/helix-benchConfig.cmake
              ${PROJECT_BINARY_DIR}/helix-benchConfigVersion.cmake
        DESTINATION ${HELIX_INSTALL_CMAKEDIR})

if(HELIX_BUILD_TESTS)
  # Installs this build into a fresh prefix, then configures, builds and runs the consumer
  # project against it.
  add_test(NAME install_consumer
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/../tests/install/consumer_test.sh ${CMAKE_COMMAND}
            ${PROJECT_BINARY_DIR} ${PROJECT_BINARY_DIR}/install-test)
  set_tests_properties(install_consumer PROPERTIES TIMEOUT 300 LABELS install
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endif()
