// The simulated machine a host program drives: Platform (host memory, logical CPUs in
// packages), binding threads to logical CPUs, IPIs and kicks (LogicalCpu::run_on), and the
// guest programs a vCPU runs (GuestProgram, ScriptedGuest).
#pragma once

#include "base/addr.h"                // Gpa, Hpa, Pfn, Level
#include "base/fault_injection.h"     // FaultInjection: Platform's environment faults
#include "platform/guest_program.h"   // GuestProgram, GuestInsn, GuestState, Gpr
#include "platform/host_memory.h"     // HostMemory: frames, keys, contents
#include "platform/key_id.h"          // KeyId, PhysAddrLayout
#include "platform/logical_cpu.h"     // LogicalCpu: run_on, handle_interrupts, in_guest_mode
#include "platform/platform.h"        // Platform, PlatformConfig, CpuBinding
#include "platform/scripted_guest.h"  // ScriptedGuest and its instruction builders
#include "platform/seamcall.h"        // SeamcallRegs, host_seamcall, linux_status
#include "platform/vm_exit.h"         // VmxExitReason
