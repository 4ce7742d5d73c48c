#include "tdx_module/measurement.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <fstream>
#include <functional>
#include <iostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "platform/vector_file_for_test.h"

namespace tdxsim {
namespace {

using testing::report_checked;

// The digest of testdata/mrtd_kat.records, computed outside tdxsim with
//   sed 's/#.*//' src/tdx_module/testdata/mrtd_kat.records | grep -Ev '^ *(record|chunk)' |
//     xxd -r -p | openssl dgst -sha384
constexpr const char* kKatMrtd =
    "7a120a4e45d4b1101bab23f1064b07e56b745bfcb5962498"
    "c71a19632449b9c9aef3e0d5970e2207717f31307fa46e96";

// FIPS 180-2's SHA-384 of the empty message: MRTD of a TD finalized with nothing added.
constexpr const char* kEmptySha384 =
    "38b060a751ac96384cd9327eb1b1e36a21fdb71114be0743"
    "4c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b";

// One 128-byte unit of the record file: a `record <leaf> gpa=<GPA>` header block or a
// `chunk` block of extended content.
struct Unit {
  std::string kind;  // "page.add", "mr.extend" or "chunk"
  uint64_t gpa = 0;
  std::vector<uint8_t> bytes;
  int line = 0;
};

std::vector<Unit> parse_records(const std::string& name) {
  const std::string path = std::string(TDXSIM_TESTDATA) + "/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::vector<Unit> units;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream tokens(line);
    std::string tok;
    if (!(tokens >> tok)) continue;
    if (tok == "record" || tok == "chunk") {
      Unit u;
      u.line = n;
      if (tok == "chunk") {
        u.kind = "chunk";
      } else {
        std::string gpa;
        tokens >> u.kind >> gpa;
        EXPECT_TRUE(gpa.starts_with("gpa=")) << name << ":" << n;
        u.gpa = std::stoull(gpa.substr(4), nullptr, 0);
      }
      std::string extra;
      EXPECT_FALSE(tokens >> extra) << name << ":" << n << ": trailing " << extra;
      units.push_back(std::move(u));
      continue;
    }
    EXPECT_FALSE(units.empty()) << name << ":" << n << ": bytes before the first unit";
    if (units.empty()) break;
    do {
      EXPECT_EQ(tok.size(), 2u) << name << ":" << n << ": '" << tok << "' is not one hex byte";
      units.back().bytes.push_back(static_cast<uint8_t>(std::stoul(tok, nullptr, 16)));
    } while (tokens >> tok);
  }
  return units;
}

std::string sha384_hex(std::span<const uint8_t> message) {
  Sha384Digest d{};
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(message.data(), message.size(), d.data(), &len, EVP_sha384(), nullptr), 1);
  return TdMeasurement::hex(d);
}

// Replays the file's build sequence through TdMeasurement's API. `tweak` may change a
// chunk before it is extended.
Sha384Digest replay(const std::vector<Unit>& units,
                    const std::function<void(size_t unit, std::array<uint8_t, 256>&)>& tweak = {}) {
  TdMeasurement m;
  for (size_t i = 0; i < units.size(); ++i) {
    const Unit& u = units[i];
    if (u.kind == "page.add") {
      m.extend_page_add(Gpa{u.gpa});
    } else if (u.kind == "mr.extend") {
      EXPECT_TRUE(i + 2 < units.size() && units[i + 1].kind == "chunk" &&
                  units[i + 2].kind == "chunk")
          << "line " << u.line << ": MR.EXTEND needs two chunk units";
      if (i + 2 >= units.size()) break;
      std::array<uint8_t, 256> chunk{};
      std::copy(units[i + 1].bytes.begin(), units[i + 1].bytes.end(), chunk.begin());
      std::copy(units[i + 2].bytes.begin(), units[i + 2].bytes.end(), chunk.begin() + 128);
      if (tweak) tweak(i, chunk);
      m.extend_mr_extend(Gpa{u.gpa}, chunk);
      i += 2;
    } else {
      ADD_FAILURE() << "line " << u.line << ": unexpected unit " << u.kind;
    }
  }
  EXPECT_EQ(m.bytes_hashed(), units.size() * TdMeasurement::kRecordBytes);
  return m.finalize();
}

TEST(MrtdKat, RecordFileMatchesTheModuleLayoutAndDigest) {
  const auto units = parse_records("mrtd_kat.records");
  ASSERT_EQ(units.size(), 8u);
  std::vector<uint8_t> message;
  for (const auto& u : units) {
    SCOPED_TRACE(fmt::format("mrtd_kat.records:{}", u.line));
    // (c) every unit is exactly one SHA-384 block.
    ASSERT_EQ(u.bytes.size(), TdMeasurement::kRecordBytes);
    // (a) the header records are byte for byte what TdMeasurement hashes.
    if (u.kind == "page.add") {
      EXPECT_EQ(TdMeasurement::hex(u.bytes),
                TdMeasurement::hex(TdMeasurement::page_add_record(Gpa{u.gpa})));
    } else if (u.kind == "mr.extend") {
      EXPECT_EQ(TdMeasurement::hex(u.bytes),
                TdMeasurement::hex(TdMeasurement::mr_extend_record(Gpa{u.gpa})));
    }
    message.insert(message.end(), u.bytes.begin(), u.bytes.end());
  }
  // What this parser read is what the openssl command hashed...
  EXPECT_EQ(sha384_hex(message), kKatMrtd);
  // ... and the same sequence through TdMeasurement's API gives the committed MRTD.
  EXPECT_EQ(TdMeasurement::hex(replay(units)), kKatMrtd);
  std::cout << "mrtd_kat.records: " << units.size() << " records (" << message.size()
            << " bytes) checked\n";
  report_checked("mrtd_kat_records", units.size());
}

TEST(MrtdKat, EveryExtendedByteIsMeasured) {
  const auto units = parse_records("mrtd_kat.records");
  const Sha384Digest base = replay(units);
  ASSERT_EQ(TdMeasurement::hex(base), kKatMrtd);
  // (b) flipping one byte of an extended chunk changes MRTD — every byte of both chunks.
  size_t flips = 0;
  for (size_t unit : {size_t{2}, size_t{5}}) {
    ASSERT_EQ(units[unit].kind, "mr.extend");
    for (size_t at = 0; at < 256; ++at) {
      const Sha384Digest d = replay(units, [&](size_t i, std::array<uint8_t, 256>& chunk) {
        if (i == unit) chunk[at] ^= 0x01;
      });
      EXPECT_NE(d, base) << "unit " << unit << " byte " << at;
      ++flips;
    }
  }
  report_checked("mrtd_kat_flips", flips);
}

TEST(MrtdKat, GpaAndOrderAreMeasured) {
  auto units = parse_records("mrtd_kat.records");
  const Sha384Digest base = replay(units);
  auto moved = units;
  moved[1].gpa += 0x1000;  // PAGE.ADD somewhere else: same content, different MRTD
  EXPECT_NE(replay(moved), base);
  auto swapped = units;
  std::swap(swapped[0], swapped[1]);  // the two PAGE.ADDs in the other order
  EXPECT_NE(replay(swapped), base);
}

TEST(TdMeasurement, EmptyMeasurementIsSha384OfNothing) {
  TdMeasurement m;
  EXPECT_FALSE(m.finalized());
  EXPECT_EQ(TdMeasurement::hex(m.finalize()), kEmptySha384);
  EXPECT_TRUE(m.finalized());
  EXPECT_EQ(TdMeasurement::hex(m.mrtd()), kEmptySha384);
  EXPECT_EQ(m.bytes_hashed(), 0u);
}

TEST(TdMeasurement, RecordsFollowSha384BlockLayout) {
  const auto r = TdMeasurement::record("MEM.PAGE.ADD", Gpa{0x0102'0304'0506'0708});
  // clang-format off
  const uint8_t head[24] = {'M', 'E', 'M', '.', 'P', 'A', 'G', 'E', '.', 'A', 'D', 'D', 0, 0, 0, 0,
                            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
  // clang-format on
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(r[i], head[i]) << "byte " << i;
  for (size_t i = 24; i < 128; ++i) EXPECT_EQ(r[i], 0) << "byte " << i;
  const auto e = TdMeasurement::mr_extend_record(Gpa{0x1100});
  EXPECT_EQ(std::string(e.begin(), e.begin() + 10), std::string("MR.EXTEND\0", 10));
  EXPECT_EQ(e[16], 0x00);
  EXPECT_EQ(e[17], 0x11);
}

TEST(TdMeasurement, CopiesCarryTheRunningHash) {
  std::array<uint8_t, 256> chunk{};
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<uint8_t>(i * 7);
  TdMeasurement a;
  a.extend_page_add(Gpa{0x1000});
  TdMeasurement peek = a;  // snapshot mid-build
  a.extend_mr_extend(Gpa{0x1000}, chunk);
  TdMeasurement b = a;
  const Sha384Digest from_a = a.finalize();
  EXPECT_EQ(b.finalize(), from_a);
  EXPECT_NE(peek.finalize(), from_a);
  EXPECT_EQ(peek.bytes_hashed(), 128u);
  EXPECT_EQ(a.bytes_hashed(), 128u * 4);

  // Assignment over a live measurement, a finalized copy, and moves.
  TdMeasurement c;
  c.extend_page_add(Gpa{0x5000});
  c = b;
  EXPECT_TRUE(c.finalized());
  EXPECT_EQ(c.mrtd(), from_a);
  TdMeasurement d = std::move(c);
  EXPECT_EQ(d.mrtd(), from_a);
  TdMeasurement e;
  e = std::move(d);
  EXPECT_EQ(e.mrtd(), from_a);
  TdMeasurement& self = e;
  e = self;
  EXPECT_EQ(e.mrtd(), from_a);
}

TEST(TdMeasurement, MisuseIsASimulatorBug) {
  std::array<uint8_t, 256> chunk{};
  EXPECT_DEATH(
      {
        TdMeasurement m;
        m.finalize();
        m.extend_page_add(Gpa{0x1000});
      },
      "MRTD extended after TDH.MR.FINALIZE");
  EXPECT_DEATH(
      {
        TdMeasurement m;
        m.finalize();
        m.finalize();
      },
      "MRTD extended after TDH.MR.FINALIZE");
  EXPECT_DEATH(
      {
        TdMeasurement m;
        m.extend_mr_extend(Gpa{0x1080}, chunk);
      },
      "MR.EXTEND measured at unaligned gpa:0x1080");
  EXPECT_DEATH(
      {
        TdMeasurement m;
        m.extend_page_add(Gpa{0x1100});
      },
      "PAGE.ADD measured at unaligned gpa:0x1100");
  EXPECT_DEATH((void)TdMeasurement{}.mrtd(), "MRTD read before TDH.MR.FINALIZE");
  EXPECT_DEATH(
      {
        TdMeasurement m;
        TdMeasurement n = std::move(m);
        m.extend_page_add(Gpa{0});  // NOLINT(bugprone-use-after-move): the point of the test
      },
      "moved-from");
}

TEST(TdMeasurement, HexIsLowerCaseWithoutSeparators) {
  const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  EXPECT_EQ(TdMeasurement::hex(bytes), "000fa5ff");
  EXPECT_EQ(TdMeasurement::hex({}), "");
}

}  // namespace
}  // namespace tdxsim
