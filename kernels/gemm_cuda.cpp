#include "kernels/gemm_cuda.hpp"

#include <cublasLt.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "comm/cuda_check.hpp"
#include "comm/cuda_timer.hpp"
#include "kernels/cuda_kernels.hpp"

#define HELIX_CUBLAS_CHECK(call)                                                          \
  do {                                                                                    \
    const cublasStatus_t helix_cublas_rc_ = (call);                                       \
    if (helix_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                        \
      ::helix::fatal(::helix::call_site(#call, __FILE__, __LINE__) + ": cuBLAS status " + \
                     std::to_string(int(helix_cublas_rc_)) + " (" +                       \
                     cublasGetStatusString(helix_cublas_rc_) + ")");                      \
  } while (0)

namespace helix::cuda {

// Row-major y[m, n] = x[m, k] w[k, n] is column-major y^T[n, m] = w^T[n, k] x^T[k, m]: A = w
// (column-major n x k, ld = ldw), B = x (column-major k x m, ld = ldx), D = y (n x m, ld = ldy).
struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

namespace {

void set_batch(cublasLtMatrixLayout_t l, int batch, int64_t stride) {
  if (batch <= 1) return;
  HELIX_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                      sizeof(batch)));
  HELIX_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

}  // namespace

Gemm::Gemm(size_t workspace_bytes) : ws_bytes_(workspace_bytes) {
  cublasLtHandle_t h = nullptr;
  HELIX_CUBLAS_CHECK(cublasLtCreate(&h));
  handle_ = h;
  HELIX_CUDA_CHECK(cudaMalloc(&ws_, ws_bytes_));
}

Gemm::~Gemm() {
  plans_.clear();
  if (ws_) cudaFree(ws_);
  if (handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

Gemm::Plan& Gemm::plan(const GemmShape& s) {
  std::ostringstream key;
  key << s.m << ',' << s.k << ',' << s.n << ',' << s.ldx << ',' << s.ldw << ',' << s.ldy << ','
      << s.y_bf16 << ',' << s.accumulate << ',' << s.batch << ',' << s.stride_x << ',' << s.stride_w
      << ',' << s.stride_y;
  auto it = plans_.find(key.str());
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  HELIX_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cudaDataType_t yt = s.y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  HELIX_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, uint64_t(s.n), uint64_t(s.k), s.ldw));
  HELIX_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, uint64_t(s.k), uint64_t(s.m), s.ldx));
  HELIX_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, yt, uint64_t(s.n), uint64_t(s.m), s.ldy));
  set_batch(p->a, s.batch, s.stride_w);
  set_batch(p->b, s.batch, s.stride_x);
  set_batch(p->c, s.batch, s.stride_y);
  cublasLtMatmulPreference_t pref = nullptr;
  HELIX_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  HELIX_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes_, sizeof(ws_bytes_)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  HELIX_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), p->op,
                                                    p->a, p->b, p->c, p->c, pref, 1, &res, &found));
  cublasLtMatmulPreferenceDestroy(pref);
  HELIX_CHECK(found > 0, "cuBLASLt has no algorithm for the GEMM " + key.str());
  p->algo = res.algo;
  return *plans_.emplace(key.str(), std::move(p)).first->second;
}

void Gemm::run(const GemmShape& s, const __nv_bfloat16* x, const __nv_bfloat16* w, void* y,
               cudaStream_t stream) {
  if (s.m == 0 || s.n == 0) return;
  HELIX_CHECK(!(s.accumulate && s.y_bf16), "Gemm: accumulation needs an fp32 output");
  if (s.k == 0) {
    HELIX_CHECK(s.accumulate, "Gemm: k = 0 without accumulation");
    return;
  }
  Plan& p = plan(s);
  const float alpha = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
  HELIX_CUBLAS_CHECK(cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), p.op, &alpha, w, p.a, x,
                                    p.b, &beta, y, p.c, y, p.c, &p.algo, ws_, ws_bytes_, stream));
}

GemmRate gemm_rate(int64_t n, int iters, cudaStream_t stream) {
  HELIX_CHECK(n > 0 && iters > 0, "gemm_rate: needs n > 0 and iters > 0");
  GemmRate r;
  r.n = n;
  const size_t bytes = size_t(n * n) * sizeof(__nv_bfloat16);
  __nv_bfloat16* buf[3] = {nullptr, nullptr, nullptr};  // x, w, y
  for (auto*& b : buf) HELIX_CUDA_CHECK(cudaMalloc(&b, bytes));
  fill_slice(buf[0], 0x6d61747269785fULL, n * n, 0, 1, 0, n * n, 1.0f, stream);
  fill_slice(buf[1], 0x776569676874ULL, n * n, 0, 1, 0, n * n, 1.0f, stream);
  {
    Gemm gemm;
    GemmShape g = GemmShape::packed(n, n, n);
    g.y_bf16 = true;
    CudaTimer timer;
    std::vector<double> tflops;
    for (int i = 0; i < iters + 2; ++i) {
      hold_stream(50000, stream);  // the events fire after the host has enqueued the GEMM
      timer.start(stream);
      gemm.run(g, buf[0], buf[1], buf[2], stream);
      timer.stop(stream);
      const double us = timer.elapsed_us();
      if (i >= 2) tflops.push_back(2.0 * double(n) * double(n) * double(n) / (us * 1e6));
    }
    std::sort(tflops.begin(), tflops.end());
    r.tflops_median = tflops[tflops.size() / 2];
    r.tflops_max = tflops.back();
  }
  for (auto* b : buf) HELIX_CUDA_CHECK(cudaFree(b));
  return r;
}

}  // namespace helix::cuda
