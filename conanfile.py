"""Conan 2 recipe for minillm (header-only). From this checkout:
    conan create . --build=missing
then in a consumer's conanfile: requires = "minillm/0.1.0"; CMake: find_package(minillm), target minillm::minillm.
"""
import os
import re

from conan import ConanFile
from conan.tools.cmake import CMake, cmake_layout
from conan.tools.files import copy, load


class MinillmConan(ConanFile):
    name = "minillm"
    package_type = "header-library"
    license = "MIT"
    description = "Header-only C++20 transformer building blocks on LibTorch"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "LICENSE"
    generators = "CMakeDeps", "CMakeToolchain"
    no_copy_source = True

    def set_version(self):
        # The version lives in one place: project(minillm VERSION x.y.z) in CMakeLists.txt.
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = re.search(r"project\(minillm VERSION ([0-9.]+)", text).group(1)

    def requirements(self):
        self.requires("libtorch/2.9.1")
        self.requires("nlohmann_json/3.11.3")
        self.requires("oniguruma/6.9.8")

    def layout(self):
        cmake_layout(self)

    def package_id(self):
        self.info.clear()

    def build(self):
        cmake = CMake(self)
        cmake.configure(variables={"MINILLM_BUILD_TESTS": "OFF", "MINILLM_BUILD_EXAMPLES": "OFF", "MINILLM_BUILD_BENCH": "OFF"})

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "minillm")
        self.cpp_info.set_property("cmake_target_name", "minillm::minillm")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.requires = ["libtorch::libtorch", "nlohmann_json::nlohmann_json", "oniguruma::onig"]
