#include "layouts/layout.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "layouts/partition.hpp"

namespace helix {

const char* to_string(LayoutKind kind) {
  switch (kind) {
    case LayoutKind::tp:
      return "tp";
    case LayoutKind::kvp:
      return "kvp";
    case LayoutKind::helix:
      return "helix";
    case LayoutKind::helix_hopb:
      return "helix-hopb";
    case LayoutKind::ep:
      return "ep";
  }
  return "?";
}

std::optional<LayoutKind> parse_layout(const std::string& name) {
  for (LayoutKind k :
       {LayoutKind::tp, LayoutKind::kvp, LayoutKind::helix, LayoutKind::helix_hopb, LayoutKind::ep})
    if (name == to_string(k)) return k;
  return std::nullopt;
}

bool runs_on_executors(LayoutKind kind) {
  return kind != LayoutKind::ep;
}

std::vector<std::string> layout_names() {
  return {"tp", "kvp", "helix", "helix-hopb"};
}

bool is_baseline(LayoutKind kind) {
  return kind == LayoutKind::tp || kind == LayoutKind::ep || kind == LayoutKind::kvp;
}

const char* family_of(LayoutKind kind) {
  return is_baseline(kind) ? "baseline" : "helix";
}

int hopb_chunks_at(int requested, int batch) {
  return std::min(requested, batch);
}

int attention_reserved_sms(const LayoutParams& p) {
  return p.kind == LayoutKind::helix_hopb && p.hopb_chunks > 1 ? p.hopb_comm_sms : 0;
}

LayoutParams make_layout(LayoutKind kind, int n, const ModelSpec& model, LayerKind layer, int batch,
                         const LayoutRequest& req) {
  LayoutParams p;
  p.kind = kind;
  p.n = n;
  p.kv_block = req.kv_block;
  if (kind == LayoutKind::tp) {
    p.kvp = 1;
    p.tpa = n;
  } else {
    p.tpa = req.tpa.value_or(std::gcd(model.kv_heads, n));
    p.kvp = req.kvp.value_or(p.tpa > 0 && n % p.tpa == 0 ? n / p.tpa : 0);
    if (!req.tpa && req.kvp && *req.kvp > 0 && n % *req.kvp == 0) p.tpa = n / *req.kvp;
  }
  const int ffn_ranks = p.ffn_ranks();
  const bool moe = layer == LayerKind::moe;
  // Explicit --tpf/--ep describe an FFN over all N ranks; the kvp layout's FFN group is its TPA
  // group, split by the defaults.
  const bool explicit_ffn = kind != LayoutKind::kvp;
  const int req_tpf = explicit_ffn && req.tpf ? *req.tpf : 0;  // 0: not given
  const int req_ep = explicit_ffn && req.ep ? *req.ep : 0;
  if (req_ep > 0)
    p.ep = req_ep;
  else if (req_tpf > 0 && ffn_ranks % req_tpf == 0)
    p.ep = ffn_ranks / req_tpf;
  else
    p.ep = moe ? std::gcd(ffn_ranks, model.moe.routed_experts) : 1;
  if (req_tpf > 0)
    p.tpf = req_tpf;
  else
    p.tpf = p.ep > 0 && ffn_ranks % p.ep == 0 ? ffn_ranks / p.ep : 0;
  p.hopb_chunks =
      kind == LayoutKind::helix_hopb ? hopb_chunks_at(req.hopb_chunks.value_or(4), batch) : 1;
  p.hopb_comm_sms =
      kind == LayoutKind::helix_hopb ? req.hopb_comm_sms.value_or(kDefaultHopbCommSms) : 0;
  return p;
}

std::string validate_layout(const LayoutParams& p, const ModelSpec& m, LayerKind layer, int batch) {
  std::ostringstream e;
  const std::string name = to_string(p.kind);
  if (!runs_on_executors(p.kind))
    return "layout " + name +
           ": priced by the cost model only (helix-bench model); the executors run " +
           "tp, kvp, helix and helix-hopb";
  if (p.n < 1) return "ranks: the rank count must be at least 1";
  if (p.kv_block < 1) return "--kv-block: the KV block length must be at least 1 token";
  if (layer == LayerKind::moe && !m.has_moe()) {
    e << "--layer: model " << m.name << " has no MoE layers";
    return e.str();
  }
  if (p.kind == LayoutKind::tp) {
    if (p.n > m.q_heads) {
      e << "layout tp: N = " << p.n << " ranks exceeds the model's " << m.q_heads
        << " query heads (each rank needs at least one head)";
      return e.str();
    }
  } else {
    if (p.kvp < 1 || p.tpa < 1 || int64_t(p.kvp) * p.tpa != p.n) {
      e << "--kvp/--tpa: layout " << name << " needs KVP x TPA = " << p.kvp << " x " << p.tpa
        << " = " << int64_t(p.kvp) * p.tpa << " to equal the number of ranks (" << p.n << ")";
      return e.str();
    }
    if (p.tpa > m.kv_heads) {
      e << "--tpa: layout " << name << " needs TPA <= KV heads, but TPA = " << p.tpa << " and "
        << m.name << " has " << m.kv_heads << " KV head" << (m.kv_heads == 1 ? "" : "s");
      return e.str();
    }
    // Each TPA slice holds floor(K / TPA) or more KV heads, each with group() query heads; after
    // the All-to-All every KVP rank must own at least one of them.
    const int64_t min_heads = balanced_range(m.kv_heads, p.tpa, p.tpa - 1).size() * m.group();
    if (p.kind != LayoutKind::kvp && p.kvp > min_heads) {
      e << "--kvp: layout " << name << " needs KVP <= query heads per TPA slice (" << min_heads
        << ") so that every rank owns a head after the All-to-All, but KVP = " << p.kvp;
      return e.str();
    }
  }
  const int ffn_ranks = p.ffn_ranks();
  if (p.tpf < 1 || p.ep < 1 || int64_t(p.tpf) * p.ep != ffn_ranks) {
    e << "--tpf/--ep: layout " << name << " needs TPF x EP = " << p.tpf << " x " << p.ep << " = "
      << int64_t(p.tpf) * p.ep << " to equal ";
    if (p.kind == LayoutKind::kvp)
      e << "TPA (" << ffn_ranks << "), the FFN group of the kvp layout";
    else
      e << "the number of ranks (" << ffn_ranks << ")";
    return e.str();
  }
  if (layer == LayerKind::moe) {
    if (m.moe.routed_experts % p.ep != 0) {
      e << "--ep: EP = " << p.ep << " must divide the " << m.moe.routed_experts
        << " routed experts of " << m.name;
      return e.str();
    }
    if (p.tpf > m.moe.expert_ffn) {
      e << "--tpf: TPF = " << p.tpf << " exceeds the expert width (" << m.moe.expert_ffn << ")";
      return e.str();
    }
  } else {
    if (p.ep != 1) {
      e << "--ep: EP = " << p.ep << " needs a MoE layer, but this layer of " << m.name
        << " is dense";
      return e.str();
    }
    if (ffn_ranks > m.ffn) {
      e << "--tpf: " << ffn_ranks << " FFN ranks exceed the FFN width (" << m.ffn << ")";
      return e.str();
    }
  }
  if (p.kind == LayoutKind::helix_hopb && (p.hopb_chunks < 1 || p.hopb_chunks > batch)) {
    e << "--hopb-chunks: HOP-B needs between 1 and B = " << batch << " chunks, got "
      << p.hopb_chunks;
    return e.str();
  }
  if (p.hopb_comm_sms < 0 || p.hopb_comm_sms > kMaxHopbCommSms) {
    e << "--hopb-comm-sms: must be between 0 and " << kMaxHopbCommSms << " SMs, got "
      << p.hopb_comm_sms;
    return e.str();
  }
  return {};
}

std::string attn_shape(const LayoutParams& p) {
  return std::to_string(p.kvp) + "x" + std::to_string(p.tpa);
}
std::string ffn_shape(const LayoutParams& p) {
  return std::to_string(p.tpf) + "x" + std::to_string(p.ep);
}

}  // namespace helix
