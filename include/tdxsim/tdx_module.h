// The TDX module a platform installs (TdxModule), and the ABI values its SEAMCALLs and
// TDCALLs speak: leaf numbers, completion statuses with their class and operand helpers,
// the page-info and TD-handle operands, TD_PARAMS, S-EPT entry states, TD-exit registers.
#pragma once

#include "tdx_module/page_info.h"      // PageInfo (GPA | level), TdHandle, Gpaw
#include "tdx_module/seamcall_leaf.h"  // SeamcallLeaf, TdcallLeaf, LeafAndVersion, TdVmCall
#include "tdx_module/sept_entry.h"     // SeptState (TDH.MEM.SEPT.RD's RDX bits 15:8)
#include "tdx_module/td_exit.h"        // ExtExitQualType (TD-exit RDX bits 3:0)
#include "tdx_module/td_params.h"      // TdParams, write_td_params, kTdAttr*
#include "tdx_module/tdx_module.h"     // TdxModule, TdxModuleConfig, vp_field, attach_guest
#include "tdx_module/tdx_status.h"     // TdxStatus, TdxOperand, status_class, operand_id
