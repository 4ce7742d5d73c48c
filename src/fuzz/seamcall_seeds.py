#!/usr/bin/env python3
"""Writes the seed corpus of seamcall_fuzzer: src/fuzz/corpus/seamcall/<name>.

Each seed is a short script in the byte language of src/fuzz/hostile_host.cc, spelled with
the helpers below so that it reads as what the host does. The seeds reach the deep states a
mutation then starts from: a TD built, finalised, a page AUGed and accepted, blocked, tracked
and removed; a 2M page demoted and promoted; a page relocated; a TD torn down; an S-EPT page
poisoned by the host. Run it again after changing the decoder (the bytes follow it):

    python3 src/fuzz/seamcall_seeds.py
"""

import os
import struct

# Start states (HostileHost::start).
BARE, BUILT, FINALIZED, ACCEPTED = 0, 1, 2, 3

# Operations: the opcode byte's value modulo 16 (HostileHost::step).
OP_RAW, OP_REMOVE, OP_BUILD_TD, OP_VCPU, OP_TABLES, OP_AUG = 0, 6, 7, 8, 9, 10
OP_PAGE_ADD, OP_ENTER, OP_STEERED, OP_MISC, OP_HOST_WRITE = 11, 12, 13, 14, 15

# The page infos the host remembers (TdRecord::mapped) after the start states, in order:
# the S-EPT tables of region 0 (levels 3, 2, 1) and region 1 (level 1), the two measured
# pages of region 0 (pages 4, 5), then in ACCEPTED the 4K page at region 0 and the 2M page
# at region 2.
MAPPED_R0_PAGE0 = 6
MAPPED_R2_2M = 7
MAPPED_R0_TABLE_2M = 2

# The pages the module was given (HostWorld::module_pages) after ACCEPTED's start: TDR, six
# TDCS pages (the S-EPT root is the fourth), TDVPR, five TDCX pages, then the S-EPT tables:
# PDPT, PD, the page table of region 0, that of region 1.
MODULE_PAGE_PD = 14
MODULE_PAGE_PT_R0 = 15


class Seed:
    def __init__(self, start, debug=False):
        # TD attributes byte (build_td): 0 = SEPT_VE_DISABLE, 1 = also DEBUG; one vCPU.
        self.b = bytearray([start])
        if start != BARE:
            self.b += bytes([1 if debug else 0, 0])  # build_td, build_vcpu (x2APIC ID)
            self.b += bytes([1, 16, 2, 16])  # two PAGE.ADDs: content seed, MR.EXTEND chunks
            if start == ACCEPTED:
                self.b += bytes([0])  # the 2M run AUG takes

    def u8(self, *values):
        self.b += bytes(values)
        return self

    def u64(self, value):
        self.b += struct.pack("<Q", value)
        return self

    # HostileHost::steered on TdRecord::mapped[index]; `below` reads the entry one level
    # below it instead. `c` picks the action for the state found; the rest follow it.
    def steered(self, index, c, *rest, below=False):
        return self.u8(OP_STEERED, 0, 1, index, 1 if below else 0, c, *rest)

    # SEPT.RD alone: what the steered host does when the read fails (a fatal TD).
    def sept_rd_fails(self, index):
        return self.u8(OP_STEERED, 0, 1, index, 0)

    def block(self, index, below=False):
        return self.steered(index, 0, below=below)

    # On a blocked leaf: TRACK (on CPU 0), then 0 REMOVE, 3 DEMOTE, 5 RELOCATE, 7 UNBLOCK.
    # On a blocked table: TRACK, then 0 PROMOTE, 1 SEPT.REMOVE, 2 UNBLOCK.
    def track_then(self, index, how, below=False):
        return self.steered(index, 1, 0, how, below=below)

    def teardown(self):
        return self.u8(OP_MISC, 0, 7)

    def finalize(self):
        return self.u8(OP_MISC, 0, 5)


def seeds():
    out = {}

    s = Seed(ACCEPTED)
    s.block(MAPPED_R0_PAGE0).track_then(MAPPED_R0_PAGE0, 0)
    out["td_4k_page_accepted_blocked_tracked_removed"] = s

    s = Seed(ACCEPTED)
    s.block(MAPPED_R2_2M).track_then(MAPPED_R2_2M, 3)  # DEMOTE
    s.block(MAPPED_R2_2M).track_then(MAPPED_R2_2M, 0)  # the table: PROMOTE
    s.block(MAPPED_R2_2M).track_then(MAPPED_R2_2M, 0)  # the 2M page again: REMOVE
    out["td_2m_page_demoted_promoted_removed"] = s

    s = Seed(ACCEPTED)
    s.block(MAPPED_R0_PAGE0).track_then(MAPPED_R0_PAGE0, 5)  # RELOCATE
    out["td_4k_page_relocated"] = s

    s = Seed(ACCEPTED)
    s.block(MAPPED_R0_TABLE_2M).track_then(MAPPED_R0_TABLE_2M, 1)  # SEPT.REMOVE (not empty)
    s.teardown()
    out["td_accepted_then_torn_down"] = s

    # Finalised, nothing AUGed: the steered host AUGs page 0 of region 0 (the entry below
    # region 0's table is FREE), then lets the guest accept it (a zero check).
    s = Seed(FINALIZED)
    s.steered(MAPPED_R0_TABLE_2M, 0, below=True)
    s.steered(MAPPED_R0_TABLE_2M, 1, 0, 1, below=True)
    out["td_page_augmented_and_accepted_by_the_steered_host"] = s

    # From nothing, by the sequences: a TD, a vCPU, tables for region 0, FINALIZE, AUG of its
    # page 3, an entry whose guest accepts it and checks it reads zeros.
    s = Seed(BARE)
    s.u8(OP_BUILD_TD, 0)
    s.u8(OP_VCPU, 0, 0)
    s.u8(OP_TABLES, 0, 0, 0, 0)  # region 0, down to level 1
    s.finalize()
    s.u8(OP_AUG, 0, 0, 3, 1)  # region 0 page 3, 4K
    s.u8(OP_ENTER, 0, 0, 0, 0, 3, 0, 0)  # one guest op: accept page 3 and check; one entry
    out["bare_td_built_by_the_sequences"] = s

    # The host writes its own key into region 0's page table: the next walk through it is a
    # machine check and the TD is fatal; an entry answers so; the TD is torn down.
    s = Seed(ACCEPTED)
    s.u8(OP_HOST_WRITE, 3, MODULE_PAGE_PT_R0, 1).u64(0xBAD).u8(7, 0)  # one word
    s.sept_rd_fails(MAPPED_R0_PAGE0)
    s.u8(OP_ENTER, 0, 0, 0, 0, 0, 0, 0)
    s.teardown()
    out["td_sept_page_poisoned_by_the_host"] = s

    # The same on the page directory, found by the CPU's own walk: the guest loads from
    # region 1, whose page table no paging-structure cache holds yet, so the walk reads the
    # directory: a machine check during the TD's run.
    s = Seed(ACCEPTED)
    s.u8(OP_HOST_WRITE, 3, MODULE_PAGE_PD, 0).u64(0xBAD)  # fill the whole page
    s.u8(OP_ENTER, 0, 0, 0, 3, 0, 8, 0, 0, 0)  # one op: load region 1 page 0; one entry
    out["td_sept_directory_poisoned_under_a_running_guest"] = s

    # A debug TD whose host reads and writes its private memory.
    s = Seed(ACCEPTED, debug=True)
    s.steered(MAPPED_R0_PAGE0, 2).u64(0)  # MEM.RD
    s.steered(MAPPED_R0_PAGE0, 6).u64(0x1234)  # MEM.WR
    out["debug_td_memory_read_and_written"] = s

    # A raw SEPT.ADD with ALLOW_EXISTING (RDX bit 0 flipped) on region 0's 2M entry, which
    # maps a table already: the module succeeds without reading R8, here a 2M run with bit 63
    # flipped. The host then writes module page 21 (of 22, counting that run as given: the
    # harness did until CI found it; now the index wraps to a page the module does hold),
    # which must be a page of memory.
    s = Seed(ACCEPTED)
    s.u8(OP_RAW, 3, 0, 0)  # kLeaves[3] TDH.MEM.SEPT.ADD, version 0, CPU 0
    s.u8(0, 0, 0, 0, 7)  # RCX: region 0 page 0 at 2M
    s.u8(240, 0, 0)  # RDX: the TD, bit 0 (ALLOW_EXISTING) flipped
    s.u8(240, 0, 63)  # R8: a 2M run, bit 63 flipped
    s.u8(0)  # R9: zero
    s.u8(OP_HOST_WRITE, 3, 21, 1, 0, 0).u64(0xBAD)  # one word of module page 21
    out["td_sept_add_allow_existing_leaves_r8_unread"] = s

    # Raw calls only, from a bare module: MNG.CREATE, then MNG.KEY.CONFIG on the new TD, with
    # the operands the leaves expect (selector bytes below 150).
    s = Seed(BARE)
    s.u8(OP_RAW, 9, 0, 0, 0, 0, 0, 1, 0, 0)  # kLeaves[9] TDH.MNG.CREATE: a fresh page, HKID 33
    s.u8(OP_RAW, 8, 0, 1, 0, 0, 0, 0, 0)  # kLeaves[8] TDH.MNG.KEY.CONFIG on CPU 1: the TD
    out["bare_raw_mng_create_and_key_config"] = s
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "corpus", "seamcall")
    os.makedirs(corpus, exist_ok=True)
    for name, seed in seeds().items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(bytes(seed.b))
    print(f"wrote {len(seeds())} seeds to {corpus}")


if __name__ == "__main__":
    main()
