// Routes each public op (kernels/<op>.h) to its CPU or CUDA implementation by the device of its
// tensors. Filled in per op family; see kernels/CMakeLists.txt.
