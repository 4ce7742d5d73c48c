// The S-EPT state machine as one table: for every leaf that acts on an S-EPT entry (the rows
// of shared/spec/tdx-module-abi.md §3.2, the guest's TDG.MEM.PAGE.ACCEPT included), every
// starting state of the entry, in INITIALIZED and in RUNNABLE — with the blocked states
// once tracked and once not where the leaf looks at tracking —, and every row of §3.3's
// illegal transitions: the exact status (operand ID or level in bits 31:0), RCX and RDX
// (the entry's details where tdx-module-rules.md §1 and A3 say they are returned) and the
// entry's state afterwards. Each row runs on a fresh TD (conformance_driver_for_test.h).
//
// The expected values are the sheets'; where tdxsim answers otherwise the row says so, and
// where tdxsim follows the module's code against the sheet's letter (docs/abi.md) the row
// carries tdxsim's answer and the reason.
#include <gtest/gtest.h>

#include <string>

#include "tdx_module/conformance_driver_for_test.h"

namespace tdxsim {
namespace {

using test::Cell;
using test::kOk;
using test::kReadQual;
using enum test::Leaf;
using enum test::TdState;
using enum test::Start;
using enum test::Out;
using enum SeptState;

// clang-format off
// Exact statuses (abi §2.2, §2.4): class and code, then the operand ID or level.
constexpr uint64_t kStateIncorrect      = 0xC000'0B0D'0000'0001;  // EPT_ENTRY_STATE_INCORRECT|RCX
constexpr uint64_t kWalkFailed          = 0xC000'0B00'0000'0001;  // EPT_WALK_FAILED|RCX
constexpr uint64_t kNotBlocked          = 0xC000'0B06'0000'0001;  // GPA_RANGE_NOT_BLOCKED|RCX
constexpr uint64_t kAlreadyBlocked      = 0x0000'0B07'0000'0001;  // GPA_RANGE_ALREADY_BLOCKED|RCX
constexpr uint64_t kTrackingNotDone     = 0xC000'0B08'0000'0001;  // TLB_TRACKING_NOT_DONE|RCX
constexpr uint64_t kTrackingNotDoneTree = 0xC000'0B08'0000'0092;  // ...|SEPT_TREE (rules A4)
constexpr uint64_t kPromoteConditions   = 0xC000'0B09'0000'0001;  // INVALID_PROMOTE_CONDITIONS|RCX
constexpr uint64_t kPageNotFree         = 0xC000'0B0E'0000'0001;  // EPT_PAGE_NOT_FREE|RCX
constexpr uint64_t kNotPresent          = 0xC000'0B03'0000'0000;  // EPT_ENTRY_NOT_PRESENT
constexpr uint64_t kNotPresentRcx       = 0xC000'0B03'0000'0001;  // ...|RCX
constexpr uint64_t kAlreadyAccepted0    = 0x0000'0B0A'0000'0000;  // PAGE_ALREADY_ACCEPTED|4K
constexpr uint64_t kAlreadyAccepted1    = 0x0000'0B0A'0000'0001;  // ...|2M
constexpr uint64_t kSizeMismatch1       = 0xC000'0B0B'0000'0001;  // PAGE_SIZE_MISMATCH|2M
constexpr uint64_t kOpStateIncorrect    = 0xC000'0608'0000'0000;  // OP_STATE_INCORRECT
constexpr uint64_t kOperandInvalidRcx   = 0xC000'0100'0000'0001;  // OPERAND_INVALID|RCX
constexpr uint64_t kMetadataR8          = 0xC000'0300'0000'0008;  // PAGE_METADATA_INCORRECT|R8
constexpr uint64_t kKeysNotConfigured   = 0x8000'0810'0000'0000;  // TD_KEYS_NOT_CONFIGURED
constexpr uint64_t kEptExit             = 0x30;  // TDH.VP.ENTER: TD exit, EPT violation

// RDX of an ACCEPT TD exit: type 1 (ACCEPT) | info << 32, info = requested level (2:0) |
// level where the walk stopped (5:3) | that entry's state (13:6) | is-leaf (14) (rules §1).
constexpr uint64_t accept_exit(uint64_t info) { return 1 | info << 32; }

constexpr Cell kCells[] = {
    // PageAdd: level 0 only (rules A17), so a non-leaf cannot be named; INITIALIZED only.
    {"PageAdd_Init_Free4K", kPageAdd, kInit, kFree4K, 0, kOk, kNone, 0, kMapped},
    {"PageAdd_Init_NlMappedEmpty", kPageAdd, kInit, kNlMappedEmpty, 1, kOperandInvalidRcx, kNone},
    {"PageAdd_Init_NlBlockedEmpty", kPageAdd, kInit, kNlBlockedEmpty, 1, kOperandInvalidRcx, kNone},
    {"PageAdd_Init_Mapped4K", kPageAdd, kInit, kMapped4K, 0, kStateIncorrect, kEntry},
    {"PageAdd_Init_Blocked4K", kPageAdd, kInit, kBlocked4K, 0, kStateIncorrect, kEntry},
    {"PageAdd_Init_Pending4K", kPageAdd, kInit, kPending4K, 0, kStateIncorrect, kEntry},
    {"PageAdd_Init_PendingBlocked4K", kPageAdd, kInit, kPendingBlocked4K, 0, kStateIncorrect, kEntry},
    {"PageAdd_Run_Free4K", kPageAdd, kRun, kFree4K, 0, kOpStateIncorrect, kNone},
    {"PageAdd_Run_NlMappedEmpty", kPageAdd, kRun, kNlMappedEmpty, 1, kOpStateIncorrect, kNone},
    {"PageAdd_Run_NlBlockedEmpty", kPageAdd, kRun, kNlBlockedEmpty, 1, kOpStateIncorrect, kNone},
    {"PageAdd_Run_Mapped4K", kPageAdd, kRun, kMapped4K, 0, kOpStateIncorrect, kNone},
    {"PageAdd_Run_Blocked4K", kPageAdd, kRun, kBlocked4K, 0, kOpStateIncorrect, kNone},
    {"PageAdd_Run_Pending4K", kPageAdd, kRun, kPending4K, 0, kOpStateIncorrect, kNone},
    {"PageAdd_Run_PendingBlocked4K", kPageAdd, kRun, kPendingBlocked4K, 0, kOpStateIncorrect, kNone},
    // SeptAddV0: NL_MAPPED refused without ALLOW_EXISTING (rules A2).
    {"SeptAddV0_Init_Free2M", kSeptAddV0, kInit, kFree2M, 1, kOk, kNone, 0, kNlMapped},
    {"SeptAddV0_Init_NlMappedEmpty", kSeptAddV0, kInit, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Init_NlBlockedEmpty", kSeptAddV0, kInit, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Init_Mapped2M", kSeptAddV0, kInit, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Init_Blocked2M", kSeptAddV0, kInit, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Init_Pending2M", kSeptAddV0, kInit, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Init_PendingBlocked2M", kSeptAddV0, kInit, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_Free2M", kSeptAddV0, kRun, kFree2M, 1, kOk, kNone, 0, kNlMapped},
    {"SeptAddV0_Run_NlMappedEmpty", kSeptAddV0, kRun, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_NlBlockedEmpty", kSeptAddV0, kRun, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_Mapped2M", kSeptAddV0, kRun, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_Blocked2M", kSeptAddV0, kRun, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_Pending2M", kSeptAddV0, kRun, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV0_Run_PendingBlocked2M", kSeptAddV0, kRun, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    // SeptAddV1 with ALLOW_EXISTING: an existing table is success, the page not consumed.
    {"SeptAddV1_Init_Free2M", kSeptAddV1, kInit, kFree2M, 1, kOk, kNone, 0, kNlMapped},
    {"SeptAddV1_Init_NlMappedEmpty", kSeptAddV1, kInit, kNlMappedEmpty, 1, kOk, kNone},
    {"SeptAddV1_Init_NlBlockedEmpty", kSeptAddV1, kInit, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Init_Mapped2M", kSeptAddV1, kInit, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Init_Blocked2M", kSeptAddV1, kInit, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Init_Pending2M", kSeptAddV1, kInit, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Init_PendingBlocked2M", kSeptAddV1, kInit, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Run_Free2M", kSeptAddV1, kRun, kFree2M, 1, kOk, kNone, 0, kNlMapped},
    {"SeptAddV1_Run_NlMappedEmpty", kSeptAddV1, kRun, kNlMappedEmpty, 1, kOk, kNone},
    {"SeptAddV1_Run_NlBlockedEmpty", kSeptAddV1, kRun, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Run_Mapped2M", kSeptAddV1, kRun, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Run_Blocked2M", kSeptAddV1, kRun, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Run_Pending2M", kSeptAddV1, kRun, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptAddV1_Run_PendingBlocked2M", kSeptAddV1, kRun, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    // Aug: 4K; a level-1 non-leaf is refused on its state before the page is looked at (A1).
    {"Aug_Init_Free4K", kAug, kInit, kFree4K, 0, kOk, kNone, 0, kPending},
    {"Aug_Init_NlMappedEmpty", kAug, kInit, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Aug_Init_NlBlockedEmpty", kAug, kInit, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"Aug_Init_Mapped4K", kAug, kInit, kMapped4K, 0, kStateIncorrect, kEntry},
    {"Aug_Init_Blocked4K", kAug, kInit, kBlocked4K, 0, kStateIncorrect, kEntry},
    {"Aug_Init_Pending4K", kAug, kInit, kPending4K, 0, kStateIncorrect, kEntry},
    {"Aug_Init_PendingBlocked4K", kAug, kInit, kPendingBlocked4K, 0, kStateIncorrect, kEntry},
    {"Aug_Run_Free4K", kAug, kRun, kFree4K, 0, kOk, kNone, 0, kPending},
    {"Aug_Run_NlMappedEmpty", kAug, kRun, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Aug_Run_NlBlockedEmpty", kAug, kRun, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"Aug_Run_Mapped4K", kAug, kRun, kMapped4K, 0, kStateIncorrect, kEntry},
    {"Aug_Run_Blocked4K", kAug, kRun, kBlocked4K, 0, kStateIncorrect, kEntry},
    {"Aug_Run_Pending4K", kAug, kRun, kPending4K, 0, kStateIncorrect, kEntry},
    {"Aug_Run_PendingBlocked4K", kAug, kRun, kPendingBlocked4K, 0, kStateIncorrect, kEntry},
    // Block. NL_BLOCKED: rules A16 (ALREADY_BLOCKED for any blocked state) over abi §3.2's
    // blank cell.
    {"Block_Init_Free4K", kBlock, kInit, kFree4K, 0, kStateIncorrect, kEntry},
    {"Block_Init_NlMappedEmpty", kBlock, kInit, kNlMappedEmpty, 1, kOk, kNone, 0, kNlBlocked},
    {"Block_Init_NlBlockedEmpty", kBlock, kInit, kNlBlockedEmpty, 1, kAlreadyBlocked, kEntry},
    {"Block_Init_Mapped4K", kBlock, kInit, kMapped4K, 0, kOk, kNone, 0, kBlocked},
    {"Block_Init_Blocked4K", kBlock, kInit, kBlocked4K, 0, kAlreadyBlocked, kEntry},
    {"Block_Init_Pending4K", kBlock, kInit, kPending4K, 0, kOk, kNone, 0, kPendingBlocked},
    {"Block_Init_PendingBlocked4K", kBlock, kInit, kPendingBlocked4K, 0, kAlreadyBlocked, kEntry},
    {"Block_Run_Free4K", kBlock, kRun, kFree4K, 0, kStateIncorrect, kEntry},
    {"Block_Run_NlMappedEmpty", kBlock, kRun, kNlMappedEmpty, 1, kOk, kNone, 0, kNlBlocked},
    {"Block_Run_NlBlockedEmpty", kBlock, kRun, kNlBlockedEmpty, 1, kAlreadyBlocked, kEntry},
    {"Block_Run_Mapped4K", kBlock, kRun, kMapped4K, 0, kOk, kNone, 0, kBlocked},
    {"Block_Run_Blocked4K", kBlock, kRun, kBlocked4K, 0, kAlreadyBlocked, kEntry},
    {"Block_Run_Pending4K", kBlock, kRun, kPending4K, 0, kOk, kNone, 0, kPendingBlocked},
    {"Block_Run_PendingBlocked4K", kBlock, kRun, kPendingBlocked4K, 0, kAlreadyBlocked, kEntry},
    // Unblock: tracking checked only in RUNNABLE (rules A6), operand SEPT_TREE (A4).
    {"Unblock_Init_Free4K", kUnblock, kInit, kFree4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Init_NlMappedEmpty", kUnblock, kInit, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Unblock_Init_NlBlockedEmpty", kUnblock, kInit, kNlBlockedEmpty, 1, kOk, kNone, 0, kNlMapped},
    {"Unblock_Init_Mapped4K", kUnblock, kInit, kMapped4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Init_Blocked4K", kUnblock, kInit, kBlocked4K, 0, kOk, kNone, 0, kMapped},
    {"Unblock_Init_Pending4K", kUnblock, kInit, kPending4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Init_PendingBlocked4K", kUnblock, kInit, kPendingBlocked4K, 0, kOk, kNone, 0, kPending},
    {"Unblock_Run_Free4K", kUnblock, kRun, kFree4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Run_NlMappedEmpty", kUnblock, kRun, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Unblock_Run_NlBlockedEmpty", kUnblock, kRun, kNlBlockedEmpty, 1, kOk, kNone, 0, kNlMapped},
    {"Unblock_Run_Mapped4K", kUnblock, kRun, kMapped4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Run_Blocked4K", kUnblock, kRun, kBlocked4K, 0, kOk, kNone, 0, kMapped},
    {"Unblock_Run_Pending4K", kUnblock, kRun, kPending4K, 0, kStateIncorrect, kEntry},
    {"Unblock_Run_PendingBlocked4K", kUnblock, kRun, kPendingBlocked4K, 0, kOk, kNone, 0, kPending},
    {"Unblock_RunUntracked_NlBlockedEmpty", kUnblock, kRunUntracked, kNlBlockedEmpty, 1, kTrackingNotDoneTree, kNone},
    {"Unblock_RunUntracked_Blocked4K", kUnblock, kRunUntracked, kBlocked4K, 0, kTrackingNotDoneTree, kNone},
    {"Unblock_RunUntracked_PendingBlocked4K", kUnblock, kRunUntracked, kPendingBlocked4K, 0, kTrackingNotDoneTree, kNone},
    // PageRemove, SeptRemove, Relocate, Demote, Promote: unblocked entries are fine before
    // FINALIZE; after it they must be blocked, then tracked (abi §3.2 footnote 1).
    {"PageRemove_Init_Free4K", kPageRemove, kInit, kFree4K, 0, kStateIncorrect, kEntry},
    {"PageRemove_Init_NlMappedEmpty", kPageRemove, kInit, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"PageRemove_Init_NlBlockedEmpty", kPageRemove, kInit, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"PageRemove_Init_Mapped4K", kPageRemove, kInit, kMapped4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_Init_Blocked4K", kPageRemove, kInit, kBlocked4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_Init_Pending4K", kPageRemove, kInit, kPending4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_Init_PendingBlocked4K", kPageRemove, kInit, kPendingBlocked4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_Run_Free4K", kPageRemove, kRun, kFree4K, 0, kStateIncorrect, kEntry},
    {"PageRemove_Run_NlMappedEmpty", kPageRemove, kRun, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"PageRemove_Run_NlBlockedEmpty", kPageRemove, kRun, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"PageRemove_Run_Mapped4K", kPageRemove, kRun, kMapped4K, 0, kNotBlocked, kEntry},
    {"PageRemove_Run_Blocked4K", kPageRemove, kRun, kBlocked4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_Run_Pending4K", kPageRemove, kRun, kPending4K, 0, kNotBlocked, kEntry},
    {"PageRemove_Run_PendingBlocked4K", kPageRemove, kRun, kPendingBlocked4K, 0, kOk, kPage, 0, kFree},
    {"PageRemove_RunUntracked_NlBlockedEmpty", kPageRemove, kRunUntracked, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"PageRemove_RunUntracked_Blocked4K", kPageRemove, kRunUntracked, kBlocked4K, 0, kTrackingNotDone, kNone},
    {"PageRemove_RunUntracked_PendingBlocked4K", kPageRemove, kRunUntracked, kPendingBlocked4K, 0, kTrackingNotDone, kNone},
    // SeptRemove: the 2M leaves are the "leaf entry" of abi §3.3.
    {"SeptRemove_Init_Free2M", kSeptRemove, kInit, kFree2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Init_NlMappedEmpty", kSeptRemove, kInit, kNlMappedEmpty, 1, kOk, kTable, 0, kFree},
    {"SeptRemove_Init_NlBlockedEmpty", kSeptRemove, kInit, kNlBlockedEmpty, 1, kOk, kTable, 0, kFree},
    {"SeptRemove_Init_Mapped2M", kSeptRemove, kInit, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Init_Blocked2M", kSeptRemove, kInit, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Init_Pending2M", kSeptRemove, kInit, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Init_PendingBlocked2M", kSeptRemove, kInit, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Run_Free2M", kSeptRemove, kRun, kFree2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Run_NlMappedEmpty", kSeptRemove, kRun, kNlMappedEmpty, 1, kNotBlocked, kEntry},
    {"SeptRemove_Run_NlBlockedEmpty", kSeptRemove, kRun, kNlBlockedEmpty, 1, kOk, kTable, 0, kFree},
    {"SeptRemove_Run_Mapped2M", kSeptRemove, kRun, kMapped2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Run_Blocked2M", kSeptRemove, kRun, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Run_Pending2M", kSeptRemove, kRun, kPending2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_Run_PendingBlocked2M", kSeptRemove, kRun, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_RunUntracked_NlBlockedEmpty", kSeptRemove, kRunUntracked, kNlBlockedEmpty, 1, kTrackingNotDone, kNone},
    {"SeptRemove_RunUntracked_Blocked2M", kSeptRemove, kRunUntracked, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"SeptRemove_RunUntracked_PendingBlocked2M", kSeptRemove, kRunUntracked, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    // Relocate: level 0 only (rules A17); the entry comes back unblocked, on the new page.
    {"Relocate_Init_Free4K", kRelocate, kInit, kFree4K, 0, kStateIncorrect, kEntry},
    {"Relocate_Init_NlMappedEmpty", kRelocate, kInit, kNlMappedEmpty, 1, kOperandInvalidRcx, kNone},
    {"Relocate_Init_NlBlockedEmpty", kRelocate, kInit, kNlBlockedEmpty, 1, kOperandInvalidRcx, kNone},
    {"Relocate_Init_Mapped4K", kRelocate, kInit, kMapped4K, 0, kOk, kPage},
    {"Relocate_Init_Blocked4K", kRelocate, kInit, kBlocked4K, 0, kOk, kPage, 0, kMapped},
    {"Relocate_Init_Pending4K", kRelocate, kInit, kPending4K, 0, kOk, kPage},
    {"Relocate_Init_PendingBlocked4K", kRelocate, kInit, kPendingBlocked4K, 0, kOk, kPage, 0, kPending},
    {"Relocate_Run_Free4K", kRelocate, kRun, kFree4K, 0, kStateIncorrect, kEntry},
    {"Relocate_Run_NlMappedEmpty", kRelocate, kRun, kNlMappedEmpty, 1, kOperandInvalidRcx, kNone},
    {"Relocate_Run_NlBlockedEmpty", kRelocate, kRun, kNlBlockedEmpty, 1, kOperandInvalidRcx, kNone},
    {"Relocate_Run_Mapped4K", kRelocate, kRun, kMapped4K, 0, kNotBlocked, kEntry},
    {"Relocate_Run_Blocked4K", kRelocate, kRun, kBlocked4K, 0, kOk, kPage, 0, kMapped},
    {"Relocate_Run_Pending4K", kRelocate, kRun, kPending4K, 0, kNotBlocked, kEntry},
    {"Relocate_Run_PendingBlocked4K", kRelocate, kRun, kPendingBlocked4K, 0, kOk, kPage, 0, kPending},
    {"Relocate_RunUntracked_NlBlockedEmpty", kRelocate, kRunUntracked, kNlBlockedEmpty, 1, kOperandInvalidRcx, kNone},
    {"Relocate_RunUntracked_Blocked4K", kRelocate, kRunUntracked, kBlocked4K, 0, kTrackingNotDone, kNone},
    {"Relocate_RunUntracked_PendingBlocked4K", kRelocate, kRunUntracked, kPendingBlocked4K, 0, kTrackingNotDone, kNone},
    // Demote: the 2M leaf becomes a table (its children's state is not in the table).
    {"Demote_Init_Free2M", kDemote, kInit, kFree2M, 1, kStateIncorrect, kEntry},
    {"Demote_Init_NlMappedEmpty", kDemote, kInit, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Demote_Init_NlBlockedEmpty", kDemote, kInit, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"Demote_Init_Mapped2M", kDemote, kInit, kMapped2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_Init_Blocked2M", kDemote, kInit, kBlocked2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_Init_Pending2M", kDemote, kInit, kPending2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_Init_PendingBlocked2M", kDemote, kInit, kPendingBlocked2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_Run_Free2M", kDemote, kRun, kFree2M, 1, kStateIncorrect, kEntry},
    {"Demote_Run_NlMappedEmpty", kDemote, kRun, kNlMappedEmpty, 1, kStateIncorrect, kEntry},
    {"Demote_Run_NlBlockedEmpty", kDemote, kRun, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"Demote_Run_Mapped2M", kDemote, kRun, kMapped2M, 1, kNotBlocked, kEntry},
    {"Demote_Run_Blocked2M", kDemote, kRun, kBlocked2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_Run_Pending2M", kDemote, kRun, kPending2M, 1, kNotBlocked, kEntry},
    {"Demote_Run_PendingBlocked2M", kDemote, kRun, kPendingBlocked2M, 1, kOk, kNone, 0, kNlMapped},
    {"Demote_RunUntracked_NlBlockedEmpty", kDemote, kRunUntracked, kNlBlockedEmpty, 1, kStateIncorrect, kEntry},
    {"Demote_RunUntracked_Blocked2M", kDemote, kRunUntracked, kBlocked2M, 1, kTrackingNotDone, kNone},
    {"Demote_RunUntracked_PendingBlocked2M", kDemote, kRunUntracked, kPendingBlocked2M, 1, kTrackingNotDone, kNone},
    // Promote: the non-leaves hold 512 mergeable PENDING children.
    {"Promote_Init_Free2M", kPromote, kInit, kFree2M, 1, kStateIncorrect, kEntry},
    {"Promote_Init_NlMappedFull", kPromote, kInit, kNlMappedFull, 1, kOk, kTable, 0, kPending},
    {"Promote_Init_NlBlockedFull", kPromote, kInit, kNlBlockedFull, 1, kOk, kTable, 0, kPending},
    {"Promote_Init_Mapped2M", kPromote, kInit, kMapped2M, 1, kStateIncorrect, kEntry},
    {"Promote_Init_Blocked2M", kPromote, kInit, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"Promote_Init_Pending2M", kPromote, kInit, kPending2M, 1, kStateIncorrect, kEntry},
    {"Promote_Init_PendingBlocked2M", kPromote, kInit, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"Promote_Run_Free2M", kPromote, kRun, kFree2M, 1, kStateIncorrect, kEntry},
    {"Promote_Run_NlMappedFull", kPromote, kRun, kNlMappedFull, 1, kNotBlocked, kEntry},
    {"Promote_Run_NlBlockedFull", kPromote, kRun, kNlBlockedFull, 1, kOk, kTable, 0, kPending},
    {"Promote_Run_Mapped2M", kPromote, kRun, kMapped2M, 1, kStateIncorrect, kEntry},
    {"Promote_Run_Blocked2M", kPromote, kRun, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"Promote_Run_Pending2M", kPromote, kRun, kPending2M, 1, kStateIncorrect, kEntry},
    {"Promote_Run_PendingBlocked2M", kPromote, kRun, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    {"Promote_RunUntracked_NlBlockedFull", kPromote, kRunUntracked, kNlBlockedFull, 1, kTrackingNotDone, kNone},
    {"Promote_RunUntracked_Blocked2M", kPromote, kRunUntracked, kBlocked2M, 1, kStateIncorrect, kEntry},
    {"Promote_RunUntracked_PendingBlocked2M", kPromote, kRunUntracked, kPendingBlocked2M, 1, kStateIncorrect, kEntry},
    // MrExtend. Sheet abi §3.3: EPT_ENTRY_NOT_PRESENT, no operand named, and rules A3 lists no
    // details for it. tdxsim adds RCX and the details when the walk stops above 4K
    // (NlBlocked), as the module's tdh_mr_extend.c does — which also does so for a 4K entry
    // with RWX 0 (FREE, BLOCKED, PENDING, PENDING_BLOCKED), where tdxsim answers without.
    // tdxsim's answers.
    {"MrExtend_Init_Free4K", kMrExtend, kInit, kFree4K, 0, kNotPresent, kNone},
    {"MrExtend_Init_NlMappedEmpty", kMrExtend, kInit, kNlMappedEmpty, 1, kNotPresent, kNone},
    {"MrExtend_Init_NlBlockedEmpty", kMrExtend, kInit, kNlBlockedEmpty, 1, kNotPresentRcx, kEntry},
    {"MrExtend_Init_Mapped4K", kMrExtend, kInit, kMapped4K, 0, kOk, kNone},
    {"MrExtend_Init_Blocked4K", kMrExtend, kInit, kBlocked4K, 0, kNotPresent, kNone},
    {"MrExtend_Init_Pending4K", kMrExtend, kInit, kPending4K, 0, kNotPresent, kNone},
    {"MrExtend_Init_PendingBlocked4K", kMrExtend, kInit, kPendingBlocked4K, 0, kNotPresent, kNone},
    {"MrExtend_Run_Free4K", kMrExtend, kRun, kFree4K, 0, kOpStateIncorrect, kNone},
    {"MrExtend_Run_NlMappedEmpty", kMrExtend, kRun, kNlMappedEmpty, 1, kOpStateIncorrect, kNone},
    {"MrExtend_Run_NlBlockedEmpty", kMrExtend, kRun, kNlBlockedEmpty, 1, kOpStateIncorrect, kNone},
    {"MrExtend_Run_Mapped4K", kMrExtend, kRun, kMapped4K, 0, kOpStateIncorrect, kNone},
    {"MrExtend_Run_Blocked4K", kMrExtend, kRun, kBlocked4K, 0, kOpStateIncorrect, kNone},
    {"MrExtend_Run_Pending4K", kMrExtend, kRun, kPending4K, 0, kOpStateIncorrect, kNone},
    {"MrExtend_Run_PendingBlocked4K", kMrExtend, kRun, kPendingBlocked4K, 0, kOpStateIncorrect, kNone},
    // MemRd, MemWr. Sheet abi §3.2 (its legend: a blank cell is EPT_ENTRY_STATE_INCORRECT with
    // details) and tdxsim differ: these leaves walk to whatever leaf maps the GPA and the
    // walk fails on a non-leaf and on a leaf with RWX 0, which tdxsim — as the module's
    // tdh_mem_rd_wr.c — answers EPT_ENTRY_NOT_PRESENT|RCX with the details of the entry where
    // the walk stopped (docs/abi.md, "TDH.MEM.RD / TDH.MEM.WR"). tdxsim's answer is encoded;
    // STATE_INCORRECT is left to states tdxsim does not model (BLOCKEDW, ...).
    {"MemRd_Init_Free4K", kMemRd, kInit, kFree4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Init_NlMappedEmpty", kMemRd, kInit, kNlMappedEmpty, 1, kNotPresentRcx, kFreeBelow},
    {"MemRd_Init_NlBlockedEmpty", kMemRd, kInit, kNlBlockedEmpty, 1, kNotPresentRcx, kEntry},
    {"MemRd_Init_Mapped4K", kMemRd, kInit, kMapped4K, 0, kOk, kNone},
    {"MemRd_Init_Blocked4K", kMemRd, kInit, kBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Init_Pending4K", kMemRd, kInit, kPending4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Init_PendingBlocked4K", kMemRd, kInit, kPendingBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Run_Free4K", kMemRd, kRun, kFree4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Run_NlMappedEmpty", kMemRd, kRun, kNlMappedEmpty, 1, kNotPresentRcx, kFreeBelow},
    {"MemRd_Run_NlBlockedEmpty", kMemRd, kRun, kNlBlockedEmpty, 1, kNotPresentRcx, kEntry},
    {"MemRd_Run_Mapped4K", kMemRd, kRun, kMapped4K, 0, kOk, kNone},
    {"MemRd_Run_Blocked4K", kMemRd, kRun, kBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Run_Pending4K", kMemRd, kRun, kPending4K, 0, kNotPresentRcx, kEntry},
    {"MemRd_Run_PendingBlocked4K", kMemRd, kRun, kPendingBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Init_Free4K", kMemWr, kInit, kFree4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Init_NlMappedEmpty", kMemWr, kInit, kNlMappedEmpty, 1, kNotPresentRcx, kFreeBelow},
    {"MemWr_Init_NlBlockedEmpty", kMemWr, kInit, kNlBlockedEmpty, 1, kNotPresentRcx, kEntry},
    {"MemWr_Init_Mapped4K", kMemWr, kInit, kMapped4K, 0, kOk, kNone},
    {"MemWr_Init_Blocked4K", kMemWr, kInit, kBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Init_Pending4K", kMemWr, kInit, kPending4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Init_PendingBlocked4K", kMemWr, kInit, kPendingBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Run_Free4K", kMemWr, kRun, kFree4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Run_NlMappedEmpty", kMemWr, kRun, kNlMappedEmpty, 1, kNotPresentRcx, kFreeBelow},
    {"MemWr_Run_NlBlockedEmpty", kMemWr, kRun, kNlBlockedEmpty, 1, kNotPresentRcx, kEntry},
    {"MemWr_Run_Mapped4K", kMemWr, kRun, kMapped4K, 0, kOk, kNone},
    {"MemWr_Run_Blocked4K", kMemWr, kRun, kBlocked4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Run_Pending4K", kMemWr, kRun, kPending4K, 0, kNotPresentRcx, kEntry},
    {"MemWr_Run_PendingBlocked4K", kMemWr, kRun, kPendingBlocked4K, 0, kNotPresentRcx, kEntry},
    // SeptRd: every state readable.
    {"SeptRd_Init_Free4K", kSeptRd, kInit, kFree4K, 0, kOk, kEntry},
    {"SeptRd_Init_NlMappedEmpty", kSeptRd, kInit, kNlMappedEmpty, 1, kOk, kEntry},
    {"SeptRd_Init_NlBlockedEmpty", kSeptRd, kInit, kNlBlockedEmpty, 1, kOk, kEntry},
    {"SeptRd_Init_Mapped4K", kSeptRd, kInit, kMapped4K, 0, kOk, kEntry},
    {"SeptRd_Init_Blocked4K", kSeptRd, kInit, kBlocked4K, 0, kOk, kEntry},
    {"SeptRd_Init_Pending4K", kSeptRd, kInit, kPending4K, 0, kOk, kEntry},
    {"SeptRd_Init_PendingBlocked4K", kSeptRd, kInit, kPendingBlocked4K, 0, kOk, kEntry},
    {"SeptRd_Run_Free4K", kSeptRd, kRun, kFree4K, 0, kOk, kEntry},
    {"SeptRd_Run_NlMappedEmpty", kSeptRd, kRun, kNlMappedEmpty, 1, kOk, kEntry},
    {"SeptRd_Run_NlBlockedEmpty", kSeptRd, kRun, kNlBlockedEmpty, 1, kOk, kEntry},
    {"SeptRd_Run_Mapped4K", kSeptRd, kRun, kMapped4K, 0, kOk, kEntry},
    {"SeptRd_Run_Blocked4K", kSeptRd, kRun, kBlocked4K, 0, kOk, kEntry},
    {"SeptRd_Run_Pending4K", kSeptRd, kRun, kPending4K, 0, kOk, kEntry},
    {"SeptRd_Run_PendingBlocked4K", kSeptRd, kRun, kPendingBlocked4K, 0, kOk, kEntry},
    // Accept: TDH.VP.ENTER refuses INITIALIZED (rules A13); then rules §1's ACCEPT row.
    {"Accept_Init_Free4K", kAccept, kInit, kFree4K, 0, kOpStateIncorrect, kNone},
    {"Accept_Init_NlMappedEmpty", kAccept, kInit, kNlMappedEmpty, 1, kOpStateIncorrect, kNone},
    {"Accept_Init_NlBlockedEmpty", kAccept, kInit, kNlBlockedEmpty, 1, kOpStateIncorrect, kNone},
    {"Accept_Init_Mapped4K", kAccept, kInit, kMapped4K, 0, kOpStateIncorrect, kNone},
    {"Accept_Init_Blocked4K", kAccept, kInit, kBlocked4K, 0, kOpStateIncorrect, kNone},
    {"Accept_Init_Pending4K", kAccept, kInit, kPending4K, 0, kOpStateIncorrect, kNone},
    {"Accept_Init_PendingBlocked4K", kAccept, kInit, kPendingBlocked4K, 0, kOpStateIncorrect, kNone},
    {"Accept_Run_Free4K", kAccept, kRun, kFree4K, 0, kEptExit, kWrite, accept_exit(0x0)},
    {"Accept_Run_NlMappedEmpty", kAccept, kRun, kNlMappedEmpty, 1, kSizeMismatch1, kNone},
    {"Accept_Run_NlBlockedEmpty", kAccept, kRun, kNlBlockedEmpty, 1, kSizeMismatch1, kNone},
    {"Accept_Run_Mapped4K", kAccept, kRun, kMapped4K, 0, kAlreadyAccepted0, kNone},
    {"Accept_Run_Blocked4K", kAccept, kRun, kBlocked4K, 0, kEptExit, kWrite, accept_exit(0x4040)},
    {"Accept_Run_Pending4K", kAccept, kRun, kPending4K, 0, kOk, kNone, 0, kMapped},
    {"Accept_Run_PendingBlocked4K", kAccept, kRun, kPendingBlocked4K, 0, kEptExit, kWrite, accept_exit(0x40c0)},
    // --- §3.3's other rows -------------------------------------------------------------------
    // The walk stops above the level: at a FREE entry, an NL_BLOCKED one, a leaf (rules §1).
    {"Aug_Run_Free2M_At4K", kAug, kRun, kFree2M, 0, kWalkFailed, kEntry},
    {"Aug_Run_NlBlockedEmpty_At4K", kAug, kRun, kNlBlockedEmpty, 0, kWalkFailed, kEntry},
    {"Aug_Run_Pending2M_At4K", kAug, kRun, kPending2M, 0, kWalkFailed, kEntry},
    {"PageAdd_Init_Free2M_At4K", kPageAdd, kInit, kFree2M, 0, kWalkFailed, kEntry},
    {"PageAdd_Init_NlBlockedEmpty_At4K", kPageAdd, kInit, kNlBlockedEmpty, 0, kWalkFailed, kEntry},
    {"SeptAddV0_Init_NoTables_At2M", kSeptAddV0, kInit, kNoTables, 1, kWalkFailed, kEntry},
    // Version 0 with ALLOW_EXISTING set: abi §1.1 and §3.2 give the flag meaning in version 1
    // only ("else STATE_INCORRECT"); tdxsim honours it in version 0 too, as the module's
    // tdh_mem_sept_add.c does (rules A2 speaks only of the flag clear). tdxsim's answer.
    {"SeptAddV0Ae_Init_NlMappedEmpty", kSeptAddV0Ae, kInit, kNlMappedEmpty, 1, kOk, kNone},
    // The page comes after the entry (rules A1), and must be free at its size (A15).
    {"AugNotNda_Run_Free4K", kAugNotNda, kRun, kFree4K, 0, kMetadataR8, kNone},
    {"Aug2MNotFree_Run_Free2M", kAug2MNotFree, kRun, kFree2M, 1, kMetadataR8, kNone},
    // A table with a child: its parent's details; untracked first (rules A5).
    {"SeptRemove_Init_NlMappedOne", kSeptRemove, kInit, kNlMappedOne, 1, kPageNotFree, kEntry},
    {"SeptRemove_Run_NlBlockedOne", kSeptRemove, kRun, kNlBlockedOne, 1, kPageNotFree, kEntry},
    {"SeptRemove_RunUntracked_NlBlockedOne", kSeptRemove, kRunUntracked, kNlBlockedOne, 1, kTrackingNotDone, kNone},
    {"Promote_Init_NlMappedEmpty", kPromote, kInit, kNlMappedEmpty, 1, kPromoteConditions, kEntry},
    // A block made before FINALIZE is not tracked after it (rules A7).
    {"PageRemove_RunBlockedEarly_Blocked4K", kPageRemove, kRunBlockedEarly, kBlocked4K, 0, kTrackingNotDone, kNone},
    {"Unblock_RunBlockedEarly_Blocked4K", kUnblock, kRunBlockedEarly, kBlocked4K, 0, kTrackingNotDoneTree, kNone},
    // Before MNG.INIT, before KEY.CONFIG on every package, after KEY.FREEID.
    {"Aug_Uninit_NoTables", kAug, kUninit, kNoTables, 0, kOpStateIncorrect, kNone},
    {"Aug_NoKeys_NoTables", kAug, kNoKeys, kNoTables, 0, kKeysNotConfigured, kNone},
    {"Aug_TornDown_NoTables", kAug, kTornDown, kNoTables, 0, kKeysNotConfigured, kNone},
    // ACCEPT meeting a larger leaf, a missing table, a blocked table (rules §1, A10, A12).
    {"Accept_Run_Mapped2M_At4K", kAccept, kRun, kMapped2M, 0, kAlreadyAccepted1, kNone},
    {"Accept_Run_Pending2M_At4K", kAccept, kRun, kPending2M, 0, kEptExit, kWrite, accept_exit(0x4088)},
    {"Accept_Run_Pending2M", kAccept, kRun, kPending2M, 1, kOk, kNone, 0, kMapped},
    {"Accept_Run_Free2M_At4K", kAccept, kRun, kFree2M, 0, kEptExit, kWrite, accept_exit(0x8)},
    {"Accept_Run_NlBlockedEmpty_At4K", kAccept, kRun, kNlBlockedEmpty, 0, kEptExit, kWrite, accept_exit(0x2048)},
    // Guest data accesses (abi §3.3's last two rows). The exit qualification is the SDM's for a
    // load (the sheets give none); RDX 6: PENDING_EPT_VIOLATION. Without SEPT_VE_DISABLE the
    // guest's #VE handler finds the #VE: TDG.VP.VEINFO.GET succeeds, RCX 48, RDX the load's
    // qualification.
    {"Load_Run_Free4K", kLoad, kRun, kFree4K, 0, kEptExit, kRead},
    {"Load_Run_Blocked4K", kLoad, kRun, kBlocked4K, 0, kEptExit, kRead},
    {"Load_Run_Pending4K", kLoad, kRun, kPending4K, 0, kEptExit, kRead, 6},
    {"LoadVe_Run_Pending4K", kLoadVe, kRun, kPending4K, 0, kOk, kVeInfo, kReadQual},
};
// clang-format on

class SeptConformance : public test::ConformanceDriver,
                        public ::testing::WithParamInterface<Cell> {};

TEST_P(SeptConformance, Cell) {
  play(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Conformance, SeptConformance, ::testing::ValuesIn(kCells),
                         [](const ::testing::TestParamInfo<Cell>& p) {
                           return std::string(p.param.disabled ? "DISABLED_" : "") + p.param.name;
                         });

}  // namespace
}  // namespace tdxsim
