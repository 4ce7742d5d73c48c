// Progress: how a long run tells a person watching where it is. Scenarios name their phases;
// the command shows them (on stderr, when it is a terminal), the tests ignore them.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace tdxsim {

class Progress {
 public:
  virtual ~Progress() = default;
  // A new phase of the run. `done`, when set, says how far the phase has got out of `total`;
  // it is called from another thread (read counters, nothing else) until the next phase()
  // call returns, so whatever it reads must live until then.
  virtual void phase(std::string_view what, std::function<uint64_t()> done = {},
                     uint64_t total = 0) = 0;
};

}  // namespace tdxsim
