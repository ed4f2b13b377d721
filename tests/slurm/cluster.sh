#!/usr/bin/env bash
# A single-node Slurm cluster on this machine for the tests of scripts/slurm/: Debian's munge,
# slurmctld and slurmd (apt-get install munge slurmctld slurmd slurm-client), as root, with every
# file under DIR and ports of their own (16817, 16818) so that no other Slurm is disturbed.
#
# Usage: tests/slurm/cluster.sh start DIR   writes DIR/slurm.conf, starts munged (unless one
#                                           answers), slurmctld and slurmd, waits for the node
#        tests/slurm/cluster.sh stop DIR    stops what start started
# Then: SLURM_CONF=DIR/slurm.conf sbatch ... (the tests set it).
# The node is declared with this machine's CPUs and memory at 127.0.0.1 (no name lookup needed);
# no cgroups (proctrack/linuxproc, task/none), so it works in containers. Exit code 77 when Slurm or munge is not installed.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: cluster.sh start|stop DIR}" && cd "$2" && pwd)
export SLURM_CONF=$dir/slurm.conf
die() { echo "cluster.sh: $*" >&2; exit 1; }

stop() {
  if [[ -f $SLURM_CONF ]]; then
    scontrol shutdown >/dev/null 2>&1 || true
  fi
  local f pid
  for f in slurmctld slurmd munged; do
    [[ -f $dir/$f.pid ]] || continue
    pid=$(cat "$dir/$f.pid")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null || true
    rm -f "$dir/$f.pid"
  done
}

case $cmd in
  stop) stop; exit 0 ;;
  start) ;;
  *) die "unknown command $cmd (start or stop)" ;;
esac

for exe in slurmctld slurmd sbatch munged; do
  command -v "$exe" >/dev/null || { echo "cluster.sh: $exe not installed" >&2; exit 77; }
done
[[ $(id -u) -eq 0 ]] || die "needs root (slurmd starts the jobs' processes)"
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$dir/state" "$dir/spool"

# munge: reuse a running munged, else start one as the munge user with the packaged key.
if ! (munge -n 2>/dev/null | unmunge >/dev/null 2>&1); then
  [[ -f /etc/munge/munge.key ]] || die "no /etc/munge/munge.key (reinstall munge)"
  # the package's own places (/run/munge, /var/log/munge, /var/lib/munge), as its service would
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  runuser -u munge -- munged
  for _ in $(seq 50); do (munge -n 2>/dev/null | unmunge >/dev/null 2>&1) && break; sleep 0.1; done
  (munge -n | unmunge >/dev/null) || die "munged did not start (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$dir/munged.pid"
fi

cat >"$SLURM_CONF" <<CONF
ClusterName=helix-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=5
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

# Slurm 24.05 and later can run without cgroups at all (containers, chroots without a cgroup
# file system); older versions autodetect them.
version=$(sinfo --version | awk '{print $2}')
if [[ $(printf '%s\n%s\n' "$version" 24.05 | sort -V | head -n 1) == 24.05 ]]; then
  echo "CgroupPlugin=disabled" >"$dir/cgroup.conf"
fi
slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start (see $dir/slurmctld.log)"
slurmd -c -f "$SLURM_CONF" || die "slurmd did not start (see $dir/slurmd.log)"
for _ in $(seq 100); do
  state=$(timeout 5 sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.2
done
[[ $state == idle ]] || die "node $host is '$state', not idle (see $dir/slurmctld.log, $dir/slurmd.log)"
echo "cluster.sh: Slurm $version on $host: $cpus CPUs, $mem MB; SLURM_CONF=$SLURM_CONF"
