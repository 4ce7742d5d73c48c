# cmake -DDOC=<markdown> -DSOURCE=<file> -DNAME=<path shown in the doc> -P check_doc_code.cmake
#
# Fails unless DOC holds SOURCE verbatim as the code block right after the line
# "<!-- verbatim: NAME -->", so a program a document shows is the program the tests build.
cmake_policy(VERSION 3.25)

file(READ "${DOC}" doc)
file(READ "${SOURCE}" source)
set(open "<!-- verbatim: ${NAME} -->\n```cpp\n")
string(FIND "${doc}" "${open}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${DOC}: no line '<!-- verbatim: ${NAME} -->' followed by a ```cpp block")
endif()
string(LENGTH "${open}" open_length)
math(EXPR begin "${at} + ${open_length}")
string(SUBSTRING "${doc}" ${begin} -1 rest)
# The block ends at the first fence line; the newline before it belongs to the code.
string(FIND "${rest}" "\n```\n" end)
if(end EQUAL -1)
  message(FATAL_ERROR "${DOC}: the code block after '<!-- verbatim: ${NAME} -->' is not closed")
endif()
math(EXPR end "${end} + 1")
string(SUBSTRING "${rest}" 0 ${end} block)
if(NOT "${block}" STREQUAL "${source}")
  get_filename_component(shown "${SOURCE}" NAME)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${shown}.as-in-doc")
  file(WRITE "${out}" "${block}")
  message(FATAL_ERROR "${DOC} does not show ${NAME} verbatim: diff ${SOURCE} ${out}\n"
                      "(copy the file into the document's code block)")
endif()
