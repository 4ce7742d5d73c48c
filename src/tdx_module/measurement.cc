#include "tdx_module/measurement.h"

#include <openssl/evp.h>

#include <utility>

#include "base/check.h"

namespace tdxsim {
namespace {

constexpr size_t kApiNameBytes = 16;
constexpr size_t kGpaOffset = 16;

EVP_MD_CTX* new_sha384_ctx() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  TDXSIM_CHECK(ctx != nullptr, "EVP_MD_CTX_new failed");
  TDXSIM_CHECK(EVP_DigestInit_ex(ctx, EVP_sha384(), nullptr) == 1, "EVP_DigestInit_ex failed");
  return ctx;
}

EVP_MD_CTX* copy_ctx(const EVP_MD_CTX* from) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  TDXSIM_CHECK(ctx != nullptr, "EVP_MD_CTX_new failed");
  TDXSIM_CHECK(EVP_MD_CTX_copy_ex(ctx, from) == 1, "EVP_MD_CTX_copy_ex failed");
  return ctx;
}

}  // namespace

void TdMeasurement::CtxDeleter::operator()(EVP_MD_CTX* ctx) const {
  EVP_MD_CTX_free(ctx);
}

TdMeasurement::TdMeasurement() : ctx_(new_sha384_ctx()) {}

TdMeasurement::~TdMeasurement() = default;

TdMeasurement::TdMeasurement(const TdMeasurement& other)
    : ctx_(other.ctx_ ? copy_ctx(other.ctx_.get()) : nullptr),
      bytes_hashed_(other.bytes_hashed_),
      finalized_(other.finalized_),
      mrtd_(other.mrtd_) {}

TdMeasurement& TdMeasurement::operator=(const TdMeasurement& other) {
  if (this != &other) *this = TdMeasurement(other);
  return *this;
}

TdMeasurement::TdMeasurement(TdMeasurement&& other) noexcept
    : ctx_(std::move(other.ctx_)),
      bytes_hashed_(other.bytes_hashed_),
      finalized_(other.finalized_),
      mrtd_(other.mrtd_) {}

TdMeasurement& TdMeasurement::operator=(TdMeasurement&& other) noexcept {
  ctx_ = std::move(other.ctx_);
  bytes_hashed_ = other.bytes_hashed_;
  finalized_ = other.finalized_;
  mrtd_ = other.mrtd_;
  return *this;
}

MeasurementRecord TdMeasurement::record(std::string_view api_name, Gpa gpa) {
  TDXSIM_CHECK(api_name.size() <= kApiNameBytes, "API name '{}' exceeds 16 bytes", api_name);
  MeasurementRecord r{};
  for (size_t i = 0; i < api_name.size(); ++i) r[i] = static_cast<uint8_t>(api_name[i]);
  // The module stores the GPA as a uint64_t on x86: little-endian whatever the host is.
  for (size_t i = 0; i < 8; ++i) r[kGpaOffset + i] = static_cast<uint8_t>(gpa.raw() >> (8 * i));
  return r;
}

void TdMeasurement::check_extendable() const {
  TDXSIM_CHECK(ctx_ != nullptr, "use of a moved-from TdMeasurement");
  TDXSIM_CHECK(!finalized_, "MRTD extended after TDH.MR.FINALIZE");
}

void TdMeasurement::update(std::span<const uint8_t> bytes) {
  TDXSIM_CHECK(EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()) == 1,
               "EVP_DigestUpdate failed");
  bytes_hashed_ += bytes.size();
}

void TdMeasurement::extend_page_add(Gpa gpa) {
  check_extendable();
  TDXSIM_CHECK(gpa.is_aligned(Level::k4K), "PAGE.ADD measured at unaligned {}", gpa);
  update(page_add_record(gpa));
}

void TdMeasurement::extend_mr_extend(Gpa gpa, std::span<const uint8_t, kExtendChunkBytes> chunk) {
  check_extendable();
  TDXSIM_CHECK(gpa.raw() % kExtendChunkBytes == 0, "MR.EXTEND measured at unaligned {}", gpa);
  update(mr_extend_record(gpa));
  update(chunk);
}

Sha384Digest TdMeasurement::finalize() {
  check_extendable();
  unsigned int len = 0;
  TDXSIM_CHECK(EVP_DigestFinal_ex(ctx_.get(), mrtd_.data(), &len) == 1,
               "EVP_DigestFinal_ex failed");
  TDXSIM_CHECK(len == mrtd_.size(), "SHA-384 gave {} bytes", len);
  finalized_ = true;
  return mrtd_;
}

const Sha384Digest& TdMeasurement::mrtd() const {
  TDXSIM_CHECK(finalized_, "MRTD read before TDH.MR.FINALIZE");
  return mrtd_;
}

std::string TdMeasurement::hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

}  // namespace tdxsim
