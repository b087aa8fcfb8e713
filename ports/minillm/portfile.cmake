# Overlay port that builds from this checkout (the port lives inside the repository):
#   vcpkg install minillm --overlay-ports=<repo>/ports
set(VCPKG_BUILD_TYPE release)  # header-only library
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS -DMINILLM_BUILD_TESTS=OFF -DMINILLM_BUILD_EXAMPLES=OFF -DMINILLM_BUILD_BENCH=OFF)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME minillm CONFIG_PATH share/cmake/minillm)
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
