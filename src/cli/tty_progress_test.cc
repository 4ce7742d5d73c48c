#include "cli/tty_progress.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>

namespace tdxsim::cli {
namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

TEST(TtyProgress, LineNamesThePhaseAndHowFarItGot) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    TtyProgress p(f, std::chrono::hours(1));
    EXPECT_NE(p.line().find("running"), std::string::npos);
    std::atomic<uint64_t> n{25};
    p.phase("accepting", [&n] { return n.load(); }, 100);
    EXPECT_NE(p.line().find("accepting: 25 / 100 (25 %)"), std::string::npos) << p.line();
    n = 400;  // past the estimate: capped
    EXPECT_NE(p.line().find("(100 %)"), std::string::npos) << p.line();
    p.phase("teardown", {}, 0);
    EXPECT_EQ(p.line().find("/"), std::string::npos) << p.line();
  }
  // A run shorter than the delay leaves nothing behind.
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
}

TEST(TtyProgress, DrawsInPlaceAndErasesAtTheEnd) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    TtyProgress p(f, std::chrono::milliseconds(0));
    p.phase("filling", {}, 0);
    // The ticker draws within a redraw period; wait for the first without a fixed sleep.
    for (int i = 0; i < 2000 && contents(f).find("filling") == std::string::npos; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const std::string s = contents(f);
  EXPECT_EQ(s.rfind("\r", 0), 0u) << s;
  EXPECT_NE(s.find("filling"), std::string::npos) << s;
  EXPECT_TRUE(s.ends_with("\r\x1b[K")) << s;
  std::fclose(f);
}

}  // namespace
}  // namespace tdxsim::cli
