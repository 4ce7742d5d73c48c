// Reading table-driven test vectors from src/platform/testdata/ (tests only).
//
// A vector file holds one vector per line: whitespace-separated `key=value` fields and
// bare flags; `#` starts a comment. Values are numbers (decimal, or hex with 0x; `_` may
// group digits) or `|`-joined numbers and symbols from a table the test supplies, so a
// line reads like the manual (`e1=0x1234_5000|rwx|wb`). Every field and flag of a line
// must be consumed by the test: a misspelt key fails instead of being silently skipped.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace tdxsim::testing {

using Symbols = std::map<std::string, uint64_t, std::less<>>;

class Vector {
 public:
  Vector(std::string file, int line) : file_(std::move(file)), line_(line) {}

  std::string where() const { return fmt::format("{}:{}", file_, line_); }
  bool has(const std::string& key) const { return fields_.contains(key); }

  bool flag(const std::string& name) const {
    used_.insert(name);
    return flags_.contains(name);
  }
  std::string str(const std::string& key) const {
    used_.insert(key);
    auto it = fields_.find(key);
    if (it == fields_.end()) {
      ADD_FAILURE() << where() << ": missing field " << key;
      return {};
    }
    return it->second;
  }
  uint64_t num(const std::string& key, const Symbols& symbols = {}) const {
    return parse(key, str(key), symbols);
  }
  uint64_t num_or(const std::string& key, uint64_t fallback, const Symbols& symbols = {}) const {
    used_.insert(key);
    return has(key) ? num(key, symbols) : fallback;
  }

  // Fails the test for every field or flag the test never looked at.
  void expect_all_used() const {
    for (const auto& [k, v] : fields_) {
      if (!used_.contains(k)) ADD_FAILURE() << where() << ": unused field " << k << "=" << v;
    }
    for (const auto& f : flags_) {
      if (!used_.contains(f)) ADD_FAILURE() << where() << ": unknown flag " << f;
    }
  }

  void add_token(const std::string& tok) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos) {
      flags_.insert(tok);
    } else if (!fields_.emplace(tok.substr(0, eq), tok.substr(eq + 1)).second) {
      ADD_FAILURE() << where() << ": duplicate field " << tok;
    }
  }

 private:
  uint64_t parse(const std::string& key, const std::string& text, const Symbols& symbols) const {
    uint64_t value = 0;
    std::string_view rest = text;
    while (!rest.empty()) {
      const auto bar = rest.find('|');
      const std::string_view term = rest.substr(0, bar);
      rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
      if (auto it = symbols.find(term); it != symbols.end()) {
        value |= it->second;
        continue;
      }
      std::string digits;
      for (char c : term) {
        if (c != '_') digits += c;
      }
      const bool hex = digits.starts_with("0x") || digits.starts_with("0X");
      try {
        size_t used = 0;
        value |= std::stoull(hex ? digits.substr(2) : digits, &used, hex ? 16 : 10);
        if (used != digits.size() - (hex ? 2 : 0)) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        ADD_FAILURE() << where() << ": bad value '" << term << "' in " << key;
      }
    }
    return value;
  }

  std::string file_;
  int line_;
  std::map<std::string, std::string> fields_;
  std::set<std::string> flags_;
  mutable std::set<std::string> used_;
};

// Returns: the vectors of testdata/`name`. An unreadable or empty file fails the test.
inline std::vector<Vector> read_vectors(const std::string& name) {
  std::vector<Vector> out;
  const std::string path = std::string(TDXSIM_TESTDATA) + "/" + name;
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return out;
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream tokens(line);
    std::string tok;
    Vector v(name, n);
    bool any = false;
    while (tokens >> tok) {
      v.add_token(tok);
      any = true;
    }
    if (any) out.push_back(std::move(v));
  }
  if (out.empty()) ADD_FAILURE() << path << " holds no vectors";
  return out;
}

// Prints how many vectors of `name` were checked, so the count shows in the test log.
inline void report_checked(const std::string& name, size_t count) {
  std::cout << name << ": " << count << " vectors checked\n";
  ::testing::Test::RecordProperty(name, static_cast<int>(count));
}

}  // namespace tdxsim::testing
