# Every dependency is a Debian 12 package; scripts/install-deps installs them.
find_package(PkgConfig REQUIRED)
pkg_check_modules(URCU REQUIRED IMPORTED_TARGET liburcu-memb)
find_package(fmt REQUIRED)
find_package(Threads REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(OpenSSL REQUIRED)
if(TDXSIM_TESTS)
  find_package(GTest REQUIRED)
  # Property tests (librapidcheck-dev): target `rapidcheck`. Tests run properties with a fixed
  # seed through rc::detail::checkTestable; RC_GTEST_PROP would draw a new seed every run.
  find_package(rapidcheck CONFIG REQUIRED)
endif()
if(TDXSIM_BENCHMARKS AND TDXSIM_SANITIZE STREQUAL "")
  find_package(benchmark REQUIRED)
endif()
# Scenario files (libtomlplusplus-dev): target `tomlplusplus::tomlplusplus`.
find_package(tomlplusplus REQUIRED)
