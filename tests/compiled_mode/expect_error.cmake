# cmake -DCOMMAND=<compiler and arguments, a ;-list> -DMESSAGE=<regular expression>
#       -P expect_error.cmake
#
# Runs the command, which must fail with MESSAGE in its output (an #error of gradscope's headers).
string(REPLACE "|" ";" COMMAND "${COMMAND}")
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "compiled without an error, but must stop with: ${MESSAGE}")
endif()
if(NOT "${out}${err}" MATCHES "${MESSAGE}")
  message(FATAL_ERROR "failed, but without the message '${MESSAGE}':\n${out}${err}")
endif()
message(STATUS "stopped with: ${MESSAGE}")
