#include "common/dtype.hpp"

namespace helix {

const char* to_string(DType d) {
  switch (d) {
    case DType::fp32:
      return "fp32";
    case DType::bf16:
      return "bf16";
    case DType::fp8:
      return "fp8";
    case DType::fp4:
      return "fp4";
    case DType::int32:
      return "int32";
  }
  return "?";
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (DType d : {DType::fp32, DType::bf16, DType::fp8, DType::fp4, DType::int32})
    if (name == to_string(d)) return d;
  if (name == "float" || name == "f32") return DType::fp32;
  if (name == "bfloat16") return DType::bf16;
  if (name == "i32") return DType::int32;
  return std::nullopt;
}

double dtype_bytes(DType d) {
  switch (d) {
    case DType::fp32:
    case DType::int32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::fp8:
      return 1;
    case DType::fp4:
      return 0.5;
  }
  return 2;
}

bool is_float(DType d) {
  return d != DType::int32;
}

const char* nccl_tests_name(DType d) {
  switch (d) {
    case DType::fp32:
      return "float";
    case DType::bf16:
      return "bfloat16";
    default:
      return to_string(d);
  }
}

}  // namespace helix
