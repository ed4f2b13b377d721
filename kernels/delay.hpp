// Time on a stream, for the emulated communicator: a collective that does not move data between
// GPUs takes the time the cost model prices it at, on the GPU timeline, so that what overlaps it
// (HOP-B's next chunk of attention on another stream) is measured rather than assumed. The wait
// reads the GPU's nanosecond global timer (%globaltimer), so it is independent of the clock rate
// and of other kernels' load.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace helix::cuda {

// `count` floats from `src` to `dst` (the buffers must not overlap).
struct CopySegment {
  float* dst = nullptr;
  const float* src = nullptr;
  int64_t count = 0;
};

// Segments one launch carries (more are copied by further launches after the timed one).
constexpr int kTimedCopySegments = 16;

// One launch that copies every segment and keeps `stream` busy until `ns` nanoseconds after the
// launch began (at once when the copies take longer): a collective in a single kernel, so that
// the shortest one costs one launch. Segments beyond kTimedCopySegments are copied by further
// launches that follow it on the stream.
void timed_copies(const CopySegment* segments, int n, int64_t ns, cudaStream_t stream);

}  // namespace helix::cuda
