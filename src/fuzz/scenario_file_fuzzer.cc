// The scenario-file reader (scenarios/scenario_file.h) fed arbitrary text. Its contract, which
// a file a user wrote relies on: no input crashes or aborts it (sanitizers watch memory and
// undefined behaviour), and every rejection names a position inside the text and says what
// was wrong there. A broken contract aborts, so that libFuzzer keeps the input.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "scenarios/scenario_file.h"

namespace {

constexpr std::string_view kSourceName = "fuzz.toml";

// A 1-based position is inside the text when it names one of its characters (a line's
// newline included), or its end: toml++ reports an unterminated construct at the end of the
// text, which after a final newline is the column past that newline on the last line, not
// line + 1. Columns may count code points, never more than the line's bytes.
bool inside(std::string_view text, uint32_t line, uint32_t column) {
  if (line == 0 || column == 0) return false;
  size_t begin = 0;
  for (uint32_t l = 1; l < line; ++l) {
    const size_t nl = text.find('\n', begin);
    if (nl == std::string_view::npos) return false;
    begin = nl + 1;
  }
  size_t end = text.find('\n', begin);
  if (end == std::string_view::npos) end = text.size();
  const bool last_newline = end + 1 == text.size();
  return column <= end - begin + 1 || (last_newline && column == end - begin + 2);
}

[[noreturn]] void broken(const tdxsim::ScenarioFileError& e, std::string_view what) {
  fmt::print(stderr, "scenario_file_fuzzer: {}: {}\n", what, e.to_string());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto spec = tdxsim::parse_scenario(text, kSourceName);
  if (spec) return 0;
  const tdxsim::ScenarioFileError& e = spec.error();
  if (e.message.empty()) broken(e, "an error without a message");
  if (e.file != kSourceName) broken(e, "an error naming another file");
  if (!inside(text, e.line, e.column)) broken(e, "an error outside the text");
  return 0;
}
