// What the two LSE combine cases share (cases/combine.cpp: partials stored apart, lse_combine;
// cases/partials.cpp: partials in the exchange's rows, lse_combine_rows): the shape, the bytes
// and FLOPs, the verified size and the tolerances.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/micro/kernel_case.hpp"
#include "bench/micro/micro_backend.hpp"

namespace helix::micro {

constexpr int64_t kVerifyCombineRows = 64;

template <class Derived>
struct CombineCaseBase : KernelCase {
  CombineShape s;
  double bytes(int64_t) const override {
    return 4.0 * double(s.parts + 1) * double(s.rows) * double(s.dim + 1);
  }
  double flops() const override { return 3.0 * double(s.parts * s.rows * s.dim); }
  std::unique_ptr<KernelCase> small() const override {
    auto c = std::make_unique<Derived>(static_cast<const Derived&>(*this));
    c->s.rows = std::min(s.rows, kVerifyCombineRows);
    return c;
  }
  // The check of the given outputs (the combined values, then their LSE).
  CheckSpec combine_check(std::vector<size_t> outputs) const {
    return {std::move(outputs), 1e-3, 1e-3,
            "parts=" + std::to_string(s.parts) + " rows=" + std::to_string(s.rows) +
                " dim=" + std::to_string(s.dim)};
  }
};

}  // namespace helix::micro
