# Oniguruma, the regex engine of HF tokenizers (tokenizer.json Split/Replace patterns), as the
# target oniguruma::onig: from a CMake package where one exists (vcpkg's and Conan's "oniguruma"),
# else from pkg-config (Debian's libonig-dev ships oniguruma.pc). Used by the build and by the
# installed minillmConfig.cmake.
if(NOT TARGET oniguruma::onig)
  find_package(oniguruma CONFIG QUIET)
endif()
if(NOT TARGET oniguruma::onig)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(MINILLM_ONIGURUMA REQUIRED IMPORTED_TARGET oniguruma)
  add_library(oniguruma::onig INTERFACE IMPORTED)
  target_link_libraries(oniguruma::onig INTERFACE PkgConfig::MINILLM_ONIGURUMA)
endif()
