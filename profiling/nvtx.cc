// NVTX ranges (see nvtx.h) through the header-only NVTX3 API shipped with the CUDA toolkit. Each name
// gets a stable colour from its hash, so a phase keeps its colour across runs in Nsight Systems.
#include "profiling/nvtx.h"

#include <atomic>
#include <cstdint>

#if RECFORGE_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace rf::nvtx {
namespace {
std::atomic<bool> g_enabled{false};

#if RECFORGE_WITH_CUDA
uint32_t colour_of(const char* name) {
  static const uint32_t kPalette[] = {0xff1f77b4, 0xffff7f0e, 0xff2ca02c, 0xffd62728, 0xff9467bd,
                                      0xff8c564b, 0xffe377c2, 0xff7f7f7f, 0xffbcbd22, 0xff17becf};
  uint32_t h = 2166136261u;  // FNV-1a
  for (const char* p = name; *p; ++p) h = (h ^ static_cast<uint8_t>(*p)) * 16777619u;
  return kPalette[h % (sizeof(kPalette) / sizeof(kPalette[0]))];
}
#endif
}  // namespace

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

Range::Range(const char* name) {
#if RECFORGE_WITH_CUDA
  if (!enabled()) return;
  nvtxEventAttributes_t attr{};
  attr.version = NVTX_VERSION;
  attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attr.colorType = NVTX_COLOR_ARGB;
  attr.color = colour_of(name);
  attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attr.message.ascii = name;
  nvtxRangePushEx(&attr);
  pushed_ = true;
#else
  (void)name;
#endif
}

Range::~Range() {
#if RECFORGE_WITH_CUDA
  if (pushed_) nvtxRangePop();
#endif
}

void mark(const char* name) {
#if RECFORGE_WITH_CUDA
  if (enabled()) nvtxMarkA(name);
#else
  (void)name;
#endif
}

}  // namespace rf::nvtx
