#!/usr/bin/env bash
# Launches helix-bench (or any MPI program) through mpirun with one rank per GPU.
#
# Usage: scripts/launch/mpirun.sh [options] [--] PROGRAM [ARGS...]
#   -np N                 ranks in all (default: GPUs per node x nodes)
#   --hosts H1,H2,...     nodes to use (default: this one); each gets --gpus-per-node ranks
#   --gpus-per-node G     ranks per node (default: the GPUs nvidia-smi lists here, else 1)
#   --cpus-per-rank C     bind each rank to C consecutive cores (default: no CPU binding)
#   --print               print the mpirun command instead of running it
# Example:
#   scripts/launch/mpirun.sh -np 8 build/bin/helix-bench decode --model llama-3.1-70b \
#       --seq 64K,256K --batch 1,8 --backend cuda --out results/h200-70b.h5
#   scripts/launch/mpirun.sh --hosts node1,node2 --gpus-per-node 8 --cpus-per-rank 12 \
#       build/bin/helix-bench decode --model llama-3.1-405b --seq 1M --batch 8 --backend cuda
#
# Device binding. Every rank sees every GPU of its node and helix-bench picks its device itself:
# device = node-local rank (MPI_Comm_split_type shared) mod visible devices, and it prints the
# bus id of every rank. This script does not give each rank its own CUDA_VISIBLE_DEVICES (a
# launcher that does, one GPU per rank, works as well: ranks count as sharing a GPU, and fall
# back from NCCL to MPI with host staging, only when two of a node have the same PCI bus id);
# setting CUDA_VISIBLE_DEVICES before this script restricts the set of GPUs of every node (the
# same on all nodes) and is passed on to the ranks. Ranks are placed G per node in order, so
# local rank i drives GPU i; with --cpus-per-rank the ranks also get consecutive cores, which on
# usual 8-GPU servers puts GPUs 0-3 on the first socket's cores and 4-7 on the second's (check
# `nvidia-smi topo -m`).
#
# Environment passed to every rank: NCCL_NVLS_ENABLE (set to 0 unless already set: NVLink
# SHARP multicast needs fabric support that containers and VMs often lack; export
# NCCL_NVLS_ENABLE=1 to measure with it), every other NCCL_* variable that is set
# (NCCL_DEBUG=INFO to debug hangs; NCCL_SOCKET_IFNAME and NCCL_IB_HCA to pick networks across
# nodes), UCX_* and OMPI_MCA_* (the MPI's own transports), CUDA_VISIBLE_DEVICES, HELIX_*, PATH
# and LD_LIBRARY_PATH. helix-bench records the
# NCCL_* variables in the trace (root attribute nccl_env).
#
# Open MPI is driven with --map-by ppr:G:node and -x; MPICH and Intel MPI (Hydra) with -ppn and
# -genvlist. As root add --allow-run-as-root (or source scripts/env.sh).
set -euo pipefail

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "mpirun.sh: error: $*" >&2; exit 2; }

np=""; hosts=""; gpn=""; cpr=""; print_only=0
while (($#)); do
  case $1 in
    -np|-n|--np) [[ $# -ge 2 ]] || die "$1 needs a value"; np=$2; shift 2 ;;
    --hosts) [[ $# -ge 2 ]] || die "$1 needs a value"; hosts=$2; shift 2 ;;
    --gpus-per-node) [[ $# -ge 2 ]] || die "$1 needs a value"; gpn=$2; shift 2 ;;
    --cpus-per-rank) [[ $# -ge 2 ]] || die "$1 needs a value"; cpr=$2; shift 2 ;;
    --print) print_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
(($#)) || die "no program given (see --help)"
for pair in "-np:$np" "--gpus-per-node:$gpn" "--cpus-per-rank:$cpr"; do
  value=${pair#*:}
  [[ -z $value || $value =~ ^[1-9][0-9]*$ ]] || die "${pair%%:*}: must be a positive integer, got '$value'"
done

if [[ -z $gpn ]] && command -v nvidia-smi >/dev/null 2>&1; then
  n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
    IFS=, read -r -a vis <<<"$CUDA_VISIBLE_DEVICES"
    n=${#vis[@]}
  fi
  ((n > 0)) && gpn=$n
fi
nodes=1
if [[ -n $hosts ]]; then
  IFS=, read -r -a host_list <<<"$hosts"
  nodes=${#host_list[@]}
fi
if [[ -z $gpn ]]; then  # no GPU here (CPU backend): all ranks on this node unless told
  [[ -n $np ]] || die "no GPU found: give -np (and --gpus-per-node for several nodes)"
  gpn=$(((np + nodes - 1) / nodes))
fi
np=${np:-$((gpn * nodes))}

export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
names=()
while IFS='=' read -r name _; do
  [[ $name == NCCL_* || $name == HELIX_* || $name == UCX_* || $name == OMPI_MCA_* ]] \
    && names+=("$name")
done < <(env)
for v in CUDA_VISIBLE_DEVICES PATH LD_LIBRARY_PATH; do
  [[ -n ${!v:-} ]] && names+=("$v")
done

launcher=${MPIRUN:-mpirun}
if "$launcher" --version 2>/dev/null | grep -qiE 'open ?mpi|openrte'; then
  cmd=("$launcher" -np "$np")
  [[ -n $hosts ]] && cmd+=(--host "${hosts//,/:$gpn,}:$gpn")
  if [[ -n $cpr ]]; then
    cmd+=(--map-by "ppr:$gpn:node:PE=$cpr" --bind-to core)
  else
    cmd+=(--map-by "ppr:$gpn:node" --bind-to none)
  fi
  for n in "${names[@]}"; do cmd+=(-x "$n"); done
else  # Hydra (MPICH, Intel MPI)
  cmd=("$launcher" -n "$np" -ppn "$gpn")
  [[ -n $hosts ]] && cmd+=(-hosts "$hosts")
  [[ -n $cpr ]] && cmd+=(-bind-to "core:$cpr")
  list=$(IFS=,; echo "${names[*]}")
  [[ -n $list ]] && cmd+=(-genvlist "$list")
fi
cmd+=("$@")

echo "mpirun.sh: $np ranks, $gpn per node on $nodes node(s); NCCL_* passed: $(env | grep '^NCCL_' | sort | tr '\n' ' ')" >&2
if ((print_only)); then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
