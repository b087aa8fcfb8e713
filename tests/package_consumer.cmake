# Installs the minillm build in BUILD_DIR to a scratch prefix, then builds and runs the consumer
# project in SOURCE_DIR against it (PREFIX_PATH: the parent build's CMAKE_PREFIX_PATH, '|'-separated).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGV}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
string(REPLACE "|" ";" search "${prefix};${PREFIX_PATH}")
# Oniguruma found as a CMake package by the parent build (not through pkg-config) is passed on.
set(onig)
if(oniguruma_DIR AND EXISTS "${oniguruma_DIR}")
  set(onig "-Doniguruma_DIR=${oniguruma_DIR}")
endif()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" "-DCMAKE_PREFIX_PATH=${search}" "-DTorch_DIR=${Torch_DIR}"
    ${onig} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/hello_minillm")
