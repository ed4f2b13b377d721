#include "analytic/timeline.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace helix {

namespace {

// A collective that synchronizes its group: a collective step (not the a2a_wait join) over more
// than one rank.
bool synchronizes(const Step& s, const std::vector<int>& members) {
  return s.work.coll.has_value() && s.op != Op::a2a_wait && members.size() > 1;
}

// One collective call: the (rank index, step index) of every member.
struct Instance {
  std::vector<std::pair<size_t, size_t>> members;
  size_t expected = 0;
};

// Every synchronizing collective of every rank matched with its peers' (the k-th call on a group
// of one rank is the k-th call on the same group of every member), and per (rank, step) the
// instance it belongs to (-1: none).
struct Matching {
  std::vector<Instance> instances;
  std::vector<std::vector<int>> of_step;
};

Matching match_collectives(const LayoutParams& layout, const std::vector<RankSteps>& ranks) {
  Matching mt;
  std::map<int, size_t> index_of_rank;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i].steps.size() != ranks[i].step_us.size())
      throw std::invalid_argument("timeline: rank " + std::to_string(ranks[i].rank) + " has " +
                                  std::to_string(ranks[i].steps.size()) + " steps and " +
                                  std::to_string(ranks[i].step_us.size()) + " durations");
    index_of_rank[ranks[i].rank] = i;
  }
  std::map<std::pair<int, std::vector<int>>, std::vector<size_t>> calls;  // group -> instances
  mt.of_step.resize(ranks.size());
  for (size_t i = 0; i < ranks.size(); ++i) {
    const RankSteps& r = ranks[i];
    mt.of_step[i].assign(r.steps.size(), -1);
    std::map<std::pair<int, std::vector<int>>, size_t> seen;
    for (size_t j = 0; j < r.steps.size(); ++j) {
      const Step& s = r.steps[j];
      const std::vector<int> members = group_members(layout, s.group, r.rank);
      if (!synchronizes(s, members)) continue;
      const auto key = std::make_pair(int(s.group), members);
      const size_t k = seen[key]++;
      std::vector<size_t>& list = calls[key];
      while (list.size() <= k) {
        list.push_back(mt.instances.size());
        mt.instances.emplace_back();
        mt.instances.back().expected = members.size();
      }
      mt.instances[list[k]].members.emplace_back(i, j);
      mt.of_step[i][j] = int(list[k]);
    }
  }
  for (const auto& [key, list] : calls) {
    for (int m : key.second)
      if (!index_of_rank.count(m))
        throw std::invalid_argument("timeline: rank " + std::to_string(m) + " of a " +
                                    group_name(Group(key.first)) + " group is missing");
    for (size_t id : list)
      if (mt.instances[id].members.size() != mt.instances[id].expected)
        throw std::invalid_argument(std::string("timeline: the ranks of a ") +
                                    group_name(Group(key.first)) +
                                    " group do not run the same collectives");
  }
  return mt;
}

// Wait and transfer of each step, and the a2a_wait time, accumulated into the account.
struct Parts {
  double blocking_wait = 0, blocking_transfer = 0, nb_wait = 0, nb_transfer = 0, join = 0;
};

void add_collective(RankAccount& a, Parts& p, const Step& s, double wait, double transfer) {
  const size_t ph = size_t(s.phase);
  a.wait_us[ph] += wait;
  a.transfer_us[ph] += transfer;
  if (s.op == Op::a2a_start) {
    p.nb_wait += wait;
    p.nb_transfer += transfer;
  } else {
    p.blocking_wait += wait;
    p.blocking_transfer += transfer;
  }
}

void finish_breakdown(RankAccount& a, const Parts& p) {
  a.compute_us = 0;
  for (int k = 0; k < kNumPhases; ++k)
    if (!phase_is_comm(Phase(k))) a.compute_us += a.phase_us[size_t(k)];
  const double nb = p.nb_wait + p.nb_transfer;
  const double share = nb > 0 ? p.nb_wait / nb : 0.0;
  a.wait_exposed_us = p.blocking_wait + p.join * share;
  a.transfer_exposed_us = p.blocking_transfer + p.join * (1.0 - share);
  a.other_us = a.step_us - a.compute_us - a.wait_exposed_us - a.transfer_exposed_us;
}

void pick_critical(StepAccount& out) {
  out.critical = std::max(0, critical_index(out.ranks));
  out.step_us = 0;
  for (const RankAccount& a : out.ranks) out.step_us = std::max(out.step_us, a.step_us);
  if (out.ranks.empty()) return;
  const RankAccount& c = out.ranks[size_t(out.critical)];
  out.compute_us = c.compute_us;
  out.wait_us = c.wait_exposed_us;
  out.transfer_us = c.transfer_exposed_us;
  out.other_us = out.step_us - c.compute_us - c.wait_exposed_us - c.transfer_exposed_us;
}

}  // namespace

int critical_index(const std::vector<RankAccount>& ranks) {
  if (ranks.empty()) return -1;
  double longest = 0;
  for (const RankAccount& a : ranks) longest = std::max(longest, a.step_us);
  const double near = longest - std::max(1.0, 0.01 * longest);
  int best = -1;
  for (size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i].step_us >= near &&
        (best < 0 || ranks[i].wait_exposed_us < ranks[size_t(best)].wait_exposed_us))
      best = int(i);
  return best;
}

namespace {

StepAccount account(const Matching& mt, const std::vector<RankSteps>& ranks,
                    const std::vector<double>& rank_step_us) {
  // Transfer of each call: the shortest duration among its members.
  std::vector<double> transfer(mt.instances.size());
  for (size_t id = 0; id < mt.instances.size(); ++id) {
    double t = 1e300;
    for (const auto& [i, j] : mt.instances[id].members) t = std::min(t, ranks[i].step_us[j]);
    transfer[id] = t;
  }
  StepAccount out;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const RankSteps& r = ranks[i];
    RankAccount a;
    Parts p;
    a.step_us = rank_step_us[i];
    for (size_t j = 0; j < r.steps.size(); ++j) {
      const Step& s = r.steps[j];
      const double d = r.step_us[j];
      if (s.op == Op::a2a_wait) {  // no phase's time: exposed communication (executor.hpp)
        p.join += d;
        continue;
      }
      a.phase_us[size_t(s.phase)] += d;
      if (mt.of_step[i][j] >= 0) {
        const double t = transfer[size_t(mt.of_step[i][j])];
        add_collective(a, p, s, d - t, t);
      } else if (s.work.coll) {
        add_collective(a, p, s, 0.0, d);  // a group of one: nothing to wait for
      }
    }
    finish_breakdown(a, p);
    out.ranks.push_back(a);
  }
  pick_critical(out);
  return out;
}

}  // namespace

StepAccount account_measured(const LayoutParams& layout, const std::vector<RankSteps>& ranks,
                             const std::vector<double>& rank_step_us) {
  if (rank_step_us.size() != ranks.size())
    throw std::invalid_argument("timeline: one measured step time per rank is needed");
  return account(match_collectives(layout, ranks), ranks, rank_step_us);
}

StepAccount account_single(const RankSteps& rank, double rank_step_us) {
  if (rank.steps.size() != rank.step_us.size())
    throw std::invalid_argument("timeline: one duration per step is needed");
  Matching alone;
  alone.of_step.assign(1, std::vector<int>(rank.steps.size(), -1));
  return account(alone, {rank}, {rank_step_us});
}

StepAccount simulate_timeline(const LayoutParams& layout, const std::vector<RankSteps>& ranks) {
  const Matching mt = match_collectives(layout, ranks);
  const size_t n = ranks.size();
  // Per call: each member's arrival and transfer; completion once every member has arrived.
  struct Call {
    std::vector<double> arrival, transfer;
    size_t arrived = 0;
    double completion = -1, transfer_min = 0;
  };
  std::vector<Call> calls(mt.instances.size());
  for (size_t id = 0; id < calls.size(); ++id) {
    calls[id].arrival.assign(mt.instances[id].members.size(), 0.0);
    calls[id].transfer.assign(mt.instances[id].members.size(), 0.0);
  }
  auto slot = [&](size_t id, size_t i, size_t j) {
    const auto& m = mt.instances[id].members;
    return size_t(std::find(m.begin(), m.end(), std::make_pair(i, j)) - m.begin());
  };
  std::vector<size_t> pos(n, 0);
  std::vector<double> now(n, 0.0), comm_free(n, 0.0);
  std::vector<std::vector<char>> registered(n);
  for (size_t i = 0; i < n; ++i) registered[i].assign(ranks[i].steps.size(), 0);
  std::vector<RankAccount> acc(n);
  std::vector<Parts> parts(n);
  size_t done = 0;
  for (size_t i = 0; i < n; ++i) done += ranks[i].steps.empty();
  while (done < n) {
    bool progress = false;
    for (size_t i = 0; i < n; ++i) {
      const RankSteps& r = ranks[i];
      RankAccount& a = acc[i];
      while (pos[i] < r.steps.size()) {
        const size_t j = pos[i];
        const Step& s = r.steps[j];
        const double d = r.step_us[j];
        const int id = mt.of_step[i][j];
        if (s.op == Op::a2a_wait) {
          const double t = std::max(0.0, comm_free[i] - now[i]) + d;
          a.phase_us[size_t(s.phase)] += d;  // the wait for the exchanges: no phase's time
          parts[i].join += t;
          now[i] = std::max(now[i], comm_free[i]) + d;
        } else if (id >= 0) {
          Call& c = calls[size_t(id)];
          const size_t k = slot(size_t(id), i, j);
          if (!registered[i][j]) {
            registered[i][j] = 1;
            c.arrival[k] = s.op == Op::a2a_start ? std::max(now[i], comm_free[i]) : now[i];
            c.transfer[k] = d;
            progress = true;
            if (++c.arrived == c.arrival.size()) {
              c.completion = 0;
              for (size_t m = 0; m < c.arrival.size(); ++m)
                c.completion = std::max(c.completion, c.arrival[m] + c.transfer[m]);
              c.transfer_min = 1e300;
              for (size_t m = 0; m < c.arrival.size(); ++m)
                c.transfer_min = std::min(c.transfer_min, c.completion - c.arrival[m]);
            }
          }
          if (c.completion < 0) break;  // waits for a peer that has not arrived yet
          const double dur = c.completion - c.arrival[k];
          a.phase_us[size_t(s.phase)] += dur;
          add_collective(a, parts[i], s, dur - c.transfer_min, c.transfer_min);
          (s.op == Op::a2a_start ? comm_free[i] : now[i]) = c.completion;
        } else if (s.work.coll) {  // a group of one
          a.phase_us[size_t(s.phase)] += d;
          add_collective(a, parts[i], s, 0.0, d);
          if (s.op == Op::a2a_start)
            comm_free[i] = std::max(now[i], comm_free[i]) + d;
          else
            now[i] += d;
        } else {
          a.phase_us[size_t(s.phase)] += d;
          now[i] += d;
        }
        ++pos[i];
        progress = true;
        if (pos[i] == r.steps.size()) ++done;
      }
    }
    if (!progress && done < n)
      throw std::invalid_argument("timeline: the ranks' collectives cannot all complete");
  }
  StepAccount out;
  for (size_t i = 0; i < n; ++i) {
    acc[i].step_us = std::max(now[i], comm_free[i]);
    finish_breakdown(acc[i], parts[i]);
    out.ranks.push_back(acc[i]);
  }
  pick_critical(out);
  return out;
}

}  // namespace helix
