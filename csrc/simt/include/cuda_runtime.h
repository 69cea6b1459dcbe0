// Stand-in for the CUDA toolkit's header in the SIMT host build (no toolkit needed): the
// definitions are in simt/host_cuda.h, which is also force-included into every kernel source.
#pragma once
#include "../host_cuda.h"
