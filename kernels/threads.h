// CPU thread count for recforge's own loops (OpenMP) and the BLAS library, set together so that the
// two never oversubscribe the cores.
#pragma once

namespace rf {
void set_num_threads(int n);  // n <= 0: all hardware threads
int num_threads();
}  // namespace rf
