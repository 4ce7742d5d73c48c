// Scenario files: TOML (docs/scenarios.md) read into a ScenarioSpec. Every problem — a syntax
// error, an unknown key, a wrong type, an impossible value — comes back as a ScenarioFileError
// at the offending key or value, saying what was expected; nothing in a file can crash or
// abort the reader.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "scenarios/scenario_spec.h"

namespace tdxsim {

struct ScenarioFileError {
  std::string file;
  uint32_t line = 0;  // 1-based; 0 when the file could not be read at all
  uint32_t column = 0;
  std::string message;

  // "file:line:column: error: message", as compilers write it.
  std::string to_string() const;
};

std::expected<ScenarioSpec, ScenarioFileError> parse_scenario(std::string_view text,
                                                              std::string_view source_name);
std::expected<ScenarioSpec, ScenarioFileError> load_scenario_file(const std::string& path);

}  // namespace tdxsim
