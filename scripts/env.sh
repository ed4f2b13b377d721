# Sourced by the scripts: settings for running Open MPI jobs on a workstation or CI machine.
# Root is allowed (containers), more ranks than cores are allowed (oversubscribed ranks yield
# the CPU while they wait). Real clusters: see results/README.md and scripts/slurm/.
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
export OMPI_MCA_hwloc_base_binding_policy=${OMPI_MCA_hwloc_base_binding_policy:-none}
HELIX_JOBS=${HELIX_JOBS:-$(nproc)}
