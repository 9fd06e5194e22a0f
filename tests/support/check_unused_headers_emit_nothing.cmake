# Fails when a file that includes <procpool/procpool.hpp> (header-only) and uses nothing from it
# gets any procpool code compiled into its object. Such code is paid for by every file of a
# program that includes the headers; it happens, for instance, when a class's first virtual
# function is declared in the class and only defined, inline, further down: that function then
# becomes the class's key function, and every file that sees its definition emits the class's
# vtable and every virtual function behind it (the whole pool engine, for the Supervisor).
cmake_policy(SET CMP0007 NEW)
set(src "${WORK}/unused_headers.cpp")
set(obj "${WORK}/unused_headers.o")
file(WRITE ${src} "#include <procpool/procpool.hpp>\nint main() { return 0; }\n")
execute_process(COMMAND ${CXX} -std=c++20 -O0 -I${ROOT} -c ${src} -o ${obj}
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling ${src} failed:\n${err}")
endif()
execute_process(COMMAND ${NM} -C --defined-only ${obj} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${obj}")
endif()
string(REGEX MATCHALL "[^\n]*procpool::[^\n]*" emitted "${symbols}")
if(emitted)
  list(LENGTH emitted n)
  list(SUBLIST emitted 0 10 first)
  list(JOIN first "\n" first)
  message(FATAL_ERROR "including <procpool/procpool.hpp> and using nothing emitted ${n} procpool "
                      "symbols, among them:\n${first}")
endif()
message(STATUS "a file that includes procpool and uses nothing compiles no procpool code")
