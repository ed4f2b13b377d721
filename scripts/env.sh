# shellcheck shell=bash
# Sourced by the scripts: the Python environment of scripts/setup.sh first on PATH (.venv, or
# HELIX_VENV), and settings for running Open MPI jobs on a workstation or CI machine: root is
# allowed (containers), more ranks than cores are allowed (oversubscribed ranks yield the CPU
# while they wait). Real clusters: see results/README.md and scripts/slurm/.
helix_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helix_venv=${HELIX_VENV:-$helix_root/.venv}
if [[ -x $helix_venv/bin/python3 && :$PATH: != *":$helix_venv/bin:"* ]]; then
  export PATH="$helix_venv/bin:$PATH"
fi
# Open MPI of EL distributions lives outside PATH (module load mpi/openmpi-x86_64).
if ! command -v mpiexec >/dev/null && [[ -x /usr/lib64/openmpi/bin/mpiexec ]]; then
  export PATH="/usr/lib64/openmpi/bin:$PATH"
fi
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
export OMPI_MCA_hwloc_base_binding_policy=${OMPI_MCA_hwloc_base_binding_policy:-none}
# The same for Open MPI 5 (Debian 13, Ubuntu 24.10+), whose launcher (PRRTE) has its own names.
export PRTE_MCA_rmaps_default_mapping_policy=${PRTE_MCA_rmaps_default_mapping_policy:-:oversubscribe}
export PRTE_MCA_hwloc_default_binding_policy=${PRTE_MCA_hwloc_default_binding_policy:-none}
HELIX_JOBS=${HELIX_JOBS:-$(nproc)}
