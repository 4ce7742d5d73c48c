#include "tdx_module/td_metadata.h"

#include <array>
#include <atomic>

namespace tdxsim {
namespace {

struct Field {
  uint64_t id;  // with the TD context code
  uint64_t (*read)(const Td&);
};

// Ascending by ID: the version 1 enumeration walks it in order.
constexpr std::array kFields = {
    Field{td_field_id(td_field::kConfigFlags), [](const Td& td) { return td.config_flags; }},
    Field{td_field_id(td_field::kTdCtls), [](const Td& td) { return td.td_ctls; }},
    Field{td_field_id(td_field::kNotifyEnables),
          [](const Td& td) { return td.notify_enables.load(std::memory_order_relaxed); }},
};

constexpr bool ascending() {
  for (size_t i = 1; i < kFields.size(); ++i) {
    if (kFields[i - 1].id >= kFields[i].id) return false;
  }
  return true;
}
static_assert(ascending());

}  // namespace

std::optional<uint64_t> read_td_field(const Td& td, uint64_t id) {
  for (const Field& f : kFields) {
    if (f.id == td_field_id(id)) return f.read(td);
  }
  return std::nullopt;
}

uint64_t first_td_field() { return kFields.front().id; }

uint64_t next_td_field(uint64_t id) {
  for (size_t i = 0; i + 1 < kFields.size(); ++i) {
    if (kFields[i].id == td_field_id(id)) return kFields[i + 1].id;
  }
  return kMdFieldIdNa;
}

}  // namespace tdxsim
