add_compile_options(-Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor -Wcast-qual
                    -Wold-style-cast -Wimplicit-fallthrough)

if(TDXSIM_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(TDXSIM_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
  add_compile_definitions(TDXSIM_TSAN=1)
elseif(NOT TDXSIM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TDXSIM_SANITIZE must be '', 'address' or 'thread', not '${TDXSIM_SANITIZE}'")
endif()

if(TDXSIM_THREAD_SAFETY)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "TDXSIM_THREAD_SAFETY needs clang (use the clang preset)")
  endif()
  add_compile_options(-Wthread-safety -Wthread-safety-beta -Werror)
endif()
