// Compiled by the test kvm_private_path_is_the_only_door, which passes only if this fails
// to compile because TdpMmu's mirror half is private: code outside the private-memory path
// (here, as the rest of kvm/ would) cannot reach a mirror root or map into one.
#include "kvm/tdp_mmu.h"

namespace tdxsim {

RetPf reach_private_memory_directly(TdpMmu& mmu, KvmPageFault& fault) {
  return mmu.map_in(mmu.get_mirror_root(), fault);
}

}  // namespace tdxsim
