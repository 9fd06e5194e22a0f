# Runs a program and checks how it ended:
#   cmake -DPROGRAM=... [-DARGS=a|b|c] [-DEXIT_CODE=n] [-DEXPECT1=regex -DEXPECT2=regex ...]
#         [-DFORBID=regex] -P check_run.cmake
# ARGS are separated by '|'. The exit code must be exactly EXIT_CODE (default 0), every
# EXPECTn (n = 1..20) must match the output (stdout and stderr together), and FORBID must not.
if(NOT DEFINED PROGRAM)
  message(FATAL_ERROR "check_run.cmake: PROGRAM is not set")
endif()
if(NOT DEFINED EXIT_CODE)
  set(EXIT_CODE 0)
endif()
string(REPLACE "|" ";" args "${ARGS}")

execute_process(COMMAND "${PROGRAM}" ${args}
                RESULT_VARIABLE code
                OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
message("${out}")

set(failures "")
if(NOT "${code}" STREQUAL "${EXIT_CODE}")
  string(APPEND failures "\n  exit code ${code}, expected ${EXIT_CODE}")
endif()
foreach(n RANGE 1 20)
  if(DEFINED EXPECT${n} AND NOT out MATCHES "${EXPECT${n}}")
    string(APPEND failures "\n  output does not match: ${EXPECT${n}}")
  endif()
endforeach()
if(DEFINED FORBID AND NOT "${FORBID}" STREQUAL "" AND out MATCHES "${FORBID}")
  string(APPEND failures "\n  output matches the forbidden: ${FORBID}")
endif()
if(failures)
  message(FATAL_ERROR "check failed:${failures}")
endif()
