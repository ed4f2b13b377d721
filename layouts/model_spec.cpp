#include "layouts/model_spec.hpp"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "layouts/builtin_data.hpp"

namespace helix {

namespace {

int get_positive_int(const nlohmann::json& j, const char* key, const std::string& origin) {
  if (!j.contains(key)) throw std::invalid_argument(origin + ": missing field '" + key + "'");
  const auto& v = j.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1ll << 31)) {
    throw std::invalid_argument(origin + ": field '" + key + "' must be a positive integer");
  }
  return v.get<int>();
}

void check(bool ok, const std::string& origin, const std::string& rule) {
  if (!ok) throw std::invalid_argument(origin + ": " + rule);
}

}  // namespace

float ModelSpec::softmax_scale() const {
  const int d = is_mla() ? mla.qk_nope + mla.qk_rope : head_dim;
  return 1.0f / std::sqrt(float(d));
}

int64_t ModelSpec::layer_params(LayerKind kind) const {
  const int64_t h = hidden;
  int64_t attn_params = 0;
  if (is_mla()) {
    const int64_t qk = mla.qk_nope + mla.qk_rope;
    attn_params = h * mla.q_lora + mla.q_lora                      // W_dq + q norm
                  + int64_t(mla.q_lora) * q_heads * qk             // W_uq
                  + h * (mla.kv_lora + mla.qk_rope) + mla.kv_lora  // W_dkv + kv norm
                  + int64_t(q_heads) * mla.kv_lora * mla.qk_nope   // W_uk
                  + int64_t(q_heads) * mla.kv_lora * mla.v_head    // W_uv
                  + int64_t(q_heads) * mla.v_head * h;             // W_o
  } else {
    attn_params =
        h * (int64_t(q_heads) + 2 * kv_heads) * head_dim + int64_t(q_heads) * head_dim * h;
  }
  int64_t ffn_params = 0;
  if (kind == LayerKind::moe) {
    ffn_params = h * moe.routed_experts  // router
                 + int64_t(moe.routed_experts + moe.shared_experts) * 3 * h * moe.expert_ffn;
  } else {
    ffn_params = 3 * h * ffn;
  }
  return attn_params + ffn_params + 2 * h;  // + the two RMSNorm weights
}

ModelSpec parse_model_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(origin + ": not valid JSON (" + e.what() + ")");
  }
  ModelSpec m;
  m.name = j.value("name", "");
  check(!m.name.empty(), origin, "missing field 'name'");
  m.source = j.value("source", "");
  const std::string attn_kind = j.value("attention", "gqa");
  check(attn_kind == "gqa" || attn_kind == "mla", origin,
        "field 'attention' must be 'gqa' or 'mla'");
  m.attn = attn_kind == "mla" ? AttnKind::mla : AttnKind::gqa;
  m.layers = get_positive_int(j, "layers", origin);
  m.hidden = get_positive_int(j, "hidden", origin);
  m.q_heads = get_positive_int(j, "q_heads", origin);
  m.kv_heads = get_positive_int(j, "kv_heads", origin);
  m.head_dim = get_positive_int(j, "head_dim", origin);
  m.ffn = get_positive_int(j, "ffn", origin);
  m.rms_eps = j.value("rms_eps", 1e-5f);
  m.rope_theta = j.value("rope_theta", 10000.0f);
  m.vocab = j.value("vocab", 0);
  check(m.q_heads % m.kv_heads == 0, origin, "q_heads must be a multiple of kv_heads");
  if (m.is_mla()) {
    check(j.contains("mla"), origin, "an 'mla' model needs an 'mla' object");
    const auto& a = j.at("mla");
    m.mla.q_lora = get_positive_int(a, "q_lora", origin);
    m.mla.kv_lora = get_positive_int(a, "kv_lora", origin);
    m.mla.qk_nope = get_positive_int(a, "qk_nope", origin);
    m.mla.qk_rope = get_positive_int(a, "qk_rope", origin);
    m.mla.v_head = get_positive_int(a, "v_head", origin);
    check(m.kv_heads == 1, origin, "an MLA model has kv_heads = 1 (one shared latent)");
    check(m.head_dim == m.mla.v_head, origin, "for MLA, head_dim must equal mla.v_head");
    check(m.mla.qk_rope % 2 == 0, origin, "mla.qk_rope must be even (rotary pairs)");
  } else {
    check(m.head_dim % 2 == 0, origin, "head_dim must be even (rotary pairs)");
  }
  if (j.contains("moe")) {
    const auto& e = j.at("moe");
    m.moe.routed_experts = get_positive_int(e, "routed_experts", origin);
    m.moe.top_k = get_positive_int(e, "top_k", origin);
    m.moe.shared_experts = e.value("shared_experts", 0);
    m.moe.expert_ffn = get_positive_int(e, "expert_ffn", origin);
    m.moe.first_dense_layers = e.value("first_dense_layers", 0);
    m.moe.routed_scale = e.value("routed_scale", 1.0f);
    check(m.moe.top_k <= m.moe.routed_experts, origin, "moe.top_k must not exceed routed_experts");
    check(m.moe.shared_experts >= 0 && m.moe.first_dense_layers >= 0 &&
              m.moe.first_dense_layers < m.layers,
          origin, "moe.shared_experts >= 0 and 0 <= moe.first_dense_layers < layers");
  }
  return m;
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  for (const auto& m : builtin_models()) names.push_back(m.name);
  return names;
}

ModelSpec load_model(const std::string& name_or_path) {
  const std::string suffix = ".json";
  if (name_or_path.size() > suffix.size() &&
      name_or_path.compare(name_or_path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    std::ifstream in(name_or_path);
    if (!in) throw std::invalid_argument("--model: cannot read model file '" + name_or_path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_model_json(ss.str(), name_or_path);
  }
  for (const auto& m : builtin_models()) {
    if (name_or_path == m.name) return parse_model_json(m.json, m.name);
  }
  std::string known;
  for (const auto& n : builtin_model_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("--model: unknown model '" + name_or_path + "' (known: " + known +
                              "; or a path to a .json model file)");
}

const char* to_string(AttnKind kind) {
  return kind == AttnKind::mla ? "mla" : "gqa";
}
const char* to_string(LayerKind kind) {
  return kind == LayerKind::moe ? "moe" : "dense";
}

}  // namespace helix
