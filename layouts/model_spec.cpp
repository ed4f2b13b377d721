#include "layouts/model_spec.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "layouts/builtin_data.hpp"

namespace helix {

namespace {

// Fields are typed and bounded: every dimension lies in a range that holds any real model, so
// products of dimensions stay far inside int64 and a hostile file cannot wrap a value negative.
int get_int(const nlohmann::json& j, const char* key, const std::string& origin,
            const std::string& prefix, int64_t lo, int64_t hi) {
  const std::string field = prefix + key;
  if (!j.contains(key)) throw std::invalid_argument(origin + ": missing field '" + field + "'");
  const auto& v = j.at(key);
  // Integral JSON numbers only (5, not 5.0 or "5"); unsigned values beyond int64 are too large.
  const bool integral = v.is_number_integer();
  const bool in_range =
      integral && (v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(hi)
                                          : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi);
  if (!in_range || (v.is_number_unsigned() && int64_t(v.get<uint64_t>()) < lo))
    throw std::invalid_argument(origin + ": field '" + field + "' must be an integer from " +
                                std::to_string(lo) + " to " + std::to_string(hi));
  return int(v.get<int64_t>());
}

int get_positive_int(const nlohmann::json& j, const char* key, const std::string& origin,
                     int64_t hi, const std::string& prefix = "") {
  return get_int(j, key, origin, prefix, 1, hi);
}

double get_real(const nlohmann::json& j, const char* key, const std::string& origin, double dflt,
                double lo, double hi, const std::string& prefix = "") {
  if (!j.contains(key)) return dflt;
  const auto& v = j.at(key);
  const double x = v.is_number() ? v.get<double>() : NAN;
  if (!(x > lo && x <= hi))
    throw std::invalid_argument(origin + ": field '" + prefix + key + "' must be a number > " +
                                std::to_string(lo) + " and <= " + std::to_string(hi));
  return x;
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& origin,
                       const std::string& dflt) {
  if (!j.contains(key)) return dflt;
  const auto& v = j.at(key);
  if (!v.is_string())
    throw std::invalid_argument(origin + ": field '" + key + "' must be a string");
  return v.get<std::string>();
}

const nlohmann::json& get_object(const nlohmann::json& j, const char* key,
                                 const std::string& origin) {
  const auto& v = j.at(key);
  if (!v.is_object())
    throw std::invalid_argument(origin + ": field '" + std::string(key) + "' must be an object");
  return v;
}

void check(bool ok, const std::string& origin, const std::string& rule) {
  if (!ok) throw std::invalid_argument(origin + ": " + rule);
}

}  // namespace

std::string read_small_file(const std::string& path, std::string* text) {
  constexpr int64_t kMaxBytes = int64_t(1) << 20;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_size > kMaxBytes) return "larger than 1 MiB";
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open it";
  std::stringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  if (int64_t(text->size()) > kMaxBytes) return "larger than 1 MiB";
  return "";
}

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
  if (!j.is_object()) throw std::invalid_argument(origin + ": not a JSON object");
  ModelSpec m;
  m.name = get_string(j, "name", origin, "");
  check(!m.name.empty(), origin, "missing field 'name'");
  m.source = get_string(j, "source", origin, "");
  const std::string attn_kind = get_string(j, "attention", origin, "gqa");
  check(attn_kind == "gqa" || attn_kind == "mla", origin,
        "field 'attention' must be 'gqa' or 'mla'");
  m.attn = attn_kind == "mla" ? AttnKind::mla : AttnKind::gqa;
  m.layers = get_positive_int(j, "layers", origin, kMaxModelLayers);
  m.hidden = get_positive_int(j, "hidden", origin, kMaxModelWidth);
  m.q_heads = get_positive_int(j, "q_heads", origin, kMaxModelHeads);
  m.kv_heads = get_positive_int(j, "kv_heads", origin, kMaxModelHeads);
  m.head_dim = get_positive_int(j, "head_dim", origin, kMaxModelHeadDim);
  m.ffn = get_positive_int(j, "ffn", origin, kMaxModelFfn);
  m.rms_eps = float(get_real(j, "rms_eps", origin, 1e-5, 0, 1));
  m.rope_theta = float(get_real(j, "rope_theta", origin, 10000.0, 0, 1e12));
  m.vocab = j.contains("vocab") ? get_int(j, "vocab", origin, "", 0, kMaxModelVocab) : 0;
  check(m.q_heads % m.kv_heads == 0, origin, "q_heads must be a multiple of kv_heads");
  if (m.is_mla()) {
    check(j.contains("mla"), origin, "an 'mla' model needs an 'mla' object");
    const auto& a = get_object(j, "mla", origin);
    m.mla.q_lora = get_positive_int(a, "q_lora", origin, kMaxModelWidth, "mla.");
    m.mla.kv_lora = get_positive_int(a, "kv_lora", origin, kMaxModelWidth, "mla.");
    m.mla.qk_nope = get_positive_int(a, "qk_nope", origin, kMaxModelHeadDim, "mla.");
    m.mla.qk_rope = get_positive_int(a, "qk_rope", origin, kMaxModelHeadDim, "mla.");
    m.mla.v_head = get_positive_int(a, "v_head", origin, kMaxModelHeadDim, "mla.");
    check(m.kv_heads == 1, origin, "an MLA model has kv_heads = 1 (one shared latent)");
    check(m.head_dim == m.mla.v_head, origin, "for MLA, head_dim must equal mla.v_head");
    check(m.mla.qk_rope % 2 == 0, origin, "mla.qk_rope must be even (rotary pairs)");
  } else {
    check(m.head_dim % 2 == 0, origin, "head_dim must be even (rotary pairs)");
  }
  if (j.contains("moe")) {
    const auto& e = get_object(j, "moe", origin);
    m.moe.routed_experts = get_positive_int(e, "routed_experts", origin, kMaxModelExperts, "moe.");
    m.moe.top_k = get_positive_int(e, "top_k", origin, kMaxModelExperts, "moe.");
    m.moe.shared_experts = e.contains("shared_experts")
                               ? get_int(e, "shared_experts", origin, "moe.", 0, kMaxModelExperts)
                               : 0;
    m.moe.expert_ffn = get_positive_int(e, "expert_ffn", origin, kMaxModelFfn, "moe.");
    m.moe.first_dense_layers =
        e.contains("first_dense_layers")
            ? get_int(e, "first_dense_layers", origin, "moe.", 0, kMaxModelLayers)
            : 0;
    m.moe.routed_scale = float(get_real(e, "routed_scale", origin, 1.0, 0, 1e6, "moe."));
    check(m.moe.top_k <= m.moe.routed_experts, origin, "moe.top_k must not exceed routed_experts");
    check(m.moe.first_dense_layers < m.layers, origin,
          "moe.first_dense_layers must be less than layers");
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
    std::string text;
    const std::string why = read_small_file(name_or_path, &text);
    if (!why.empty())
      throw std::invalid_argument("--model: cannot read model file '" + name_or_path + "' (" + why +
                                  ")");
    try {
      return parse_model_json(text, name_or_path);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("--model: ") + e.what());
    }
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
