# shellcheck shell=bash disable=SC2034  # the variables below are read by the batch scripts
# Sourced by the batch scripts of scripts/slurm/ inside the job: finds the checkout, the Python
# environment and helix-bench, counts the GPUs of a node, picks srun's MPI plugin, prints what it
# found and builds the srun launcher for helix-sweep. Sets:
#   root            the checkout (HELIX_ROOT, else the submit directory)
#   gpus            GPUs per node (SLURM_GPUS_ON_NODE, else nvidia-smi; 0 without GPUs)
#   tasks_per_node  ranks per node: the GPUs, or the job's tasks per node without GPUs
#   backend         cuda with GPUs, else cpu (decode options given to the script win)
#   launcher        srun --export=ALL [--mpi=X] -N {nodes} -n {np} --ntasks-per-node=... for
#                   helix-sweep --launcher
# Environment read: HELIX_ROOT, HELIX_SRUN_MPI (srun's --mpi plugin: pmix, pmi2, none, ...;
# default: pmix when `srun --mpi=list` offers it, else pmi2, else the cluster's MpiDefault).
root=${HELIX_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$root" || exit 2
[[ -x build/bin/helix-bench ]] || command -v helix-bench >/dev/null || {
  echo "helix: build/bin/helix-bench missing under $root (run scripts/build.sh; submit from the repository root or set HELIX_ROOT)" >&2
  exit 2
}
if [[ -x $root/.venv/bin/python3 ]]; then
  export PATH="$root/.venv/bin:$PATH"  # the environment of scripts/setup.sh
fi

# GPUs of this node: what Slurm allocated, else what the driver lists.
gpus=${SLURM_GPUS_ON_NODE:-}
gpus=${gpus##*:}  # "h200:8" -> 8
gpu_source="SLURM_GPUS_ON_NODE"
if [[ -z $gpus ]]; then
  gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
  gpu_source="nvidia-smi -L"
fi
gpus=${gpus:-0}
if ((gpus > 0)); then
  tasks_per_node=$gpus
  backend=cuda
else
  tasks_per_node=${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}
  tasks_per_node=${tasks_per_node%%(*}  # "2(x3)" -> 2
  backend=cpu
fi

# srun's MPI plugin.
mpi=${HELIX_SRUN_MPI:-}
mpi_source="HELIX_SRUN_MPI"
if [[ -z $mpi ]]; then
  plugins=$(srun --mpi=list 2>&1 || true)
  mpi_source="srun --mpi=list"
  if grep -qw pmix <<<"$plugins"; then
    mpi=pmix
  elif grep -qw pmi2 <<<"$plugins"; then
    mpi=pmi2
  else
    mpi_source="the cluster's MpiDefault"
  fi
fi
mpi_flag=${mpi:+--mpi=$mpi}
# --export=ALL: every task gets this environment (NCCL_*, UCX_*, OMPI_MCA_*, PATH) even when the
# job was submitted with --export=NONE. --gpu-bind=none: every task sees all GPUs of its node
# and helix-bench picks device = node-local rank (per-task GPU binding under cgroups would hide
# the peers' GPUs from each rank and cost NCCL its peer-to-peer paths).
launcher="srun --export=ALL${mpi_flag:+ $mpi_flag} -N {nodes} -n {np} --ntasks-per-node=$tasks_per_node --gpu-bind=none --cpu-bind=cores"

echo "helix: job ${SLURM_JOB_ID:-none} on $(hostname), ${SLURM_JOB_NUM_NODES:-1} node(s) (${SLURM_JOB_NODELIST:-?}), restart count ${SLURM_RESTART_COUNT:-0}"
if ((gpus > 0)); then
  echo "helix: $gpus GPUs per node (from $gpu_source): $tasks_per_node ranks per node, backend cuda"
else
  echo "helix: no GPU found (SLURM_GPUS_ON_NODE unset, nvidia-smi lists none): $tasks_per_node ranks per node, backend cpu"
fi
mpi_text=${mpi_flag:-"without --mpi"}
echo "helix: srun $mpi_text (from $mpi_source)"
for prefix in NCCL_ UCX_ OMPI_MCA_; do
  vars=$(env | grep "^$prefix" | sort | tr '\n' ' ' || true)
  echo "helix: ${prefix}* passed to every task: ${vars:-none set}"
done
