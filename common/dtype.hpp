// Element types: the arithmetic and storage precision of weights, KV cache and GEMMs (the cost
// model, the executors' traces), and the element types of collectives (helix-micro).
#pragma once

#include <optional>
#include <string>

namespace helix {

enum class DType { fp32, bf16, fp8, fp4, int32 };

// "fp32", "bf16", "fp8", "fp4", "int32".
const char* to_string(DType d);
// The name above, or an alias: "float" / "f32" (fp32), "bfloat16" (bf16), "i32" (int32).
std::optional<DType> parse_dtype(const std::string& name);
// Bytes per element (fp4: 0.5, block scales not counted).
double dtype_bytes(DType d);
// Floating-point types (every type but int32).
bool is_float(DType d);
// The name nccl-tests prints: "float", "bfloat16", "int32" (others: to_string).
const char* nccl_tests_name(DType d);

}  // namespace helix
