// Time on a stream, for the emulated communicator: a collective that does not move data takes the
// time the cost model prices it at, on the GPU timeline, so that what overlaps it (HOP-B's next
// chunk of attention on another stream) is measured rather than assumed. One thread each; they
// read the GPU's nanosecond global timer (%globaltimer), so the wait is independent of the clock
// rate and of other kernels' load.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace helix::cuda {

// Writes the global timer (ns) into *slot when the stream reaches this point.
void stamp_time(uint64_t* slot, cudaStream_t stream);
// Keeps the stream busy until the global timer reaches *slot + ns (at once if it already has).
void hold_until(const uint64_t* slot, int64_t ns, cudaStream_t stream);

}  // namespace helix::cuda
