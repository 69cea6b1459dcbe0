"""What the CUDA kernels will do on a GPU, worked out without one: the implicit-GEMM plans the
model takes per layer (``plans``). Used by the SIMT plan-coverage test and the GPU report."""
