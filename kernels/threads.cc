// One knob for CPU parallelism: OpenMP loops in kernels/cpu and OpenBLAS's own threads.
#include "kernels/threads.h"

#include <cblas.h>
#include <omp.h>

#include <thread>

namespace rf {

static int g_threads = 0;

void set_num_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace rf
