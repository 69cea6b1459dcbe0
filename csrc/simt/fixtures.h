// Fixture kernels of the SIMT runtime's own tests (fixtures.cu): each has a correct version and a
// version with one classic bug that a check must report.
#pragma once

#include <string>
#include <vector>

namespace ffsim {

std::vector<std::string> fixture_names();
// in, out: float32[n] (registered as the op's tensors; in read-only); n a multiple of 32 in 32..256.
void run_fixture(const std::string& name, bool bug, const float* in, float* out, int n);

}  // namespace ffsim
