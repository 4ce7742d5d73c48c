// MRTD: the TD's build-time measurement, an incremental SHA-384 the module keeps in the
// TDCS from TDH.MNG.INIT to TDH.MR.FINALIZE.
//
// The message is a sequence of 128-byte SHA-384 blocks (module src/common/crypto/sha384.h,
// sha384_128B_block_t):
//
//   TDH.MEM.PAGE.ADD  one record:  "MEM.PAGE.ADD" + GPA of the page        (tdh_mem_page_add.c)
//   TDH.MR.EXTEND     one record:  "MR.EXTEND"    + GPA of the 256-byte chunk,
//                     then the chunk's 256 bytes as two more blocks          (tdh_mr_extend.c)
//   TDH.MR.FINALIZE   SHA-384 padding and length; the digest is MRTD       (tdh_mr_finalize.c)
//
// A record: bytes 0-15 the leaf's name in ASCII without the "TDH." prefix, zero-padded;
// bytes 16-23 the GPA, little-endian; bytes 24-127 zero. PAGE.ADD measures where a page
// went, not what it holds; only MR.EXTEND measures content.
//
// Thread safety: none; the module serializes these leaves by taking the TDR exclusively.
#pragma once

#include <openssl/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/addr.h"

namespace tdxsim {

using Sha384Digest = std::array<uint8_t, 48>;
using MeasurementRecord = std::array<uint8_t, 128>;

class TdMeasurement {
 public:
  static constexpr size_t kRecordBytes = 128;
  static constexpr size_t kExtendChunkBytes = 256;

  // An empty measurement, as TDH.MNG.INIT starts it.
  TdMeasurement();
  ~TdMeasurement();
  // Copies carry the running hash state (EVP_MD_CTX_copy_ex), so a copy can be finalized
  // to peek at what MRTD would be now without ending the original.
  TdMeasurement(const TdMeasurement& other);
  TdMeasurement& operator=(const TdMeasurement& other);
  // A moved-from measurement may only be destroyed or assigned to.
  TdMeasurement(TdMeasurement&& other) noexcept;
  TdMeasurement& operator=(TdMeasurement&& other) noexcept;

  // TDH.MEM.PAGE.ADD's record. REQUIRES: not finalized; `gpa` 4K-aligned (the leaf checked).
  void extend_page_add(Gpa gpa);
  // TDH.MR.EXTEND's record, then `chunk` — the 256 bytes at `gpa` as the TD sees them.
  // REQUIRES: not finalized; `gpa` 256-byte-aligned (the leaf checked).
  void extend_mr_extend(Gpa gpa, std::span<const uint8_t, kExtendChunkBytes> chunk);
  // TDH.MR.FINALIZE. Returns: MRTD. REQUIRES: not finalized — the op_state gate makes a
  // second MR.FINALIZE, or an extension after it, impossible in the module.
  Sha384Digest finalize();

  bool finalized() const { return finalized_; }
  // REQUIRES: finalized().
  const Sha384Digest& mrtd() const;
  // Length of the hashed message so far: always a multiple of kRecordBytes.
  uint64_t bytes_hashed() const { return bytes_hashed_; }

  // The 128-byte record for `api_name` ("MEM.PAGE.ADD") and `gpa`.
  // REQUIRES: api_name is at most 16 characters.
  static MeasurementRecord record(std::string_view api_name, Gpa gpa);
  static MeasurementRecord page_add_record(Gpa gpa) { return record("MEM.PAGE.ADD", gpa); }
  static MeasurementRecord mr_extend_record(Gpa gpa) { return record("MR.EXTEND", gpa); }

  // Lower-case hex without separators, as `openssl dgst` prints a digest.
  static std::string hex(std::span<const uint8_t> bytes);

 private:
  struct CtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const;
  };

  void update(std::span<const uint8_t> bytes);
  void check_extendable() const;

  std::unique_ptr<EVP_MD_CTX, CtxDeleter> ctx_;
  uint64_t bytes_hashed_ = 0;
  bool finalized_ = false;
  Sha384Digest mrtd_{};
};

}  // namespace tdxsim
