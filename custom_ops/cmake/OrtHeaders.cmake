# Locate the onnxruntime C/C++ API headers (API version 21 or newer), in this order:
#   1. ONNXRUNTIME_INCLUDE_DIR given to CMake or set in the environment;
#   2. the system's libonnxruntime-dev (/usr/include/onnxruntime);
#   3. Debian trixie's libonnxruntime-dev fetched into a cache folder by fetch_ort_headers.sh.
# Only the headers are used: the op library never links onnxruntime.
function(onnxpred_find_ort_headers out_var)
  if(NOT ONNXRUNTIME_INCLUDE_DIR AND DEFINED ENV{ONNXRUNTIME_INCLUDE_DIR})
    set(ONNXRUNTIME_INCLUDE_DIR "$ENV{ONNXRUNTIME_INCLUDE_DIR}")
  endif()
  if(ONNXRUNTIME_INCLUDE_DIR)
    set(dir "${ONNXRUNTIME_INCLUDE_DIR}")
    set(origin "ONNXRUNTIME_INCLUDE_DIR")
  elseif(EXISTS "/usr/include/onnxruntime/onnxruntime_c_api.h")
    set(dir "/usr/include/onnxruntime")
    set(origin "the system's libonnxruntime-dev")
  else()
    execute_process(
      COMMAND bash "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/fetch_ort_headers.sh"
      OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "Could not fetch the onnxruntime headers; install libonnxruntime-dev "
                          "or set ONNXRUNTIME_INCLUDE_DIR to a folder holding onnxruntime_c_api.h")
    endif()
    set(origin "Debian trixie's libonnxruntime-dev (cached)")
  endif()
  if(NOT EXISTS "${dir}/onnxruntime_c_api.h")
    message(FATAL_ERROR "No onnxruntime_c_api.h in ${dir} (from ${origin})")
  endif()
  file(STRINGS "${dir}/onnxruntime_c_api.h" api_line REGEX "^#define ORT_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ORT_API_VERSION ([0-9]+).*" "\\1" api_version "${api_line}")
  if(api_version LESS 21)
    message(FATAL_ERROR "onnxruntime headers in ${dir} are API ${api_version}; PredictiveConv needs 21")
  endif()
  message(STATUS "onnxruntime headers: ${dir} (API ${api_version}, from ${origin})")
  set(${out_var} "${dir}" PARENT_SCOPE)
endfunction()
