# TDXSIM_FUZZERS: the libFuzzer build (preset `clang`, docs/fuzzing.md).
#
# Every target is compiled with libFuzzer's coverage instrumentation (fuzzer-no-link), so the
# fuzzers see the branches of the layers they drive, and with ASan+UBSan, so that a memory
# error or undefined behaviour is a crash the fuzzer keeps the input of. Only the fuzzer
# executables link libFuzzer itself (its main); the other programs of the build link the
# sanitizer runtimes alone, whose weak coverage callbacks make them ordinary programs.
if(NOT TDXSIM_FUZZERS)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "TDXSIM_FUZZERS needs clang (use the clang preset)")
endif()
if(NOT TDXSIM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TDXSIM_FUZZERS brings its own sanitizers: leave TDXSIM_SANITIZE empty")
endif()
add_compile_options(-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)

# tdxsim_fuzzer(SOURCE LIBS ...): the executable <name>_fuzzer of src/fuzz/<name>_fuzzer.cc.
function(tdxsim_fuzzer source)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  get_filename_component(name ${source} NAME_WE)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
endfunction()
