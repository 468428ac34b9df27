#!/usr/bin/env bash
# A single-node Slurm on this machine, for tests: `scripts/slurm-local.sh start|stop|status`.
#
# start: installs Debian's slurmctld, slurmd, slurm-client and munge when
#   sbatch is missing (apt-get, as root), writes a slurm.conf for this host
#   (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no accounting,
#   MailProg=/bin/true) with its state under a temporary folder, starts munged
#   (as user munge), slurmctld and slurmd without systemd, records their pids,
#   and waits until the node takes jobs. It prints `export SLURM_CONF=...`
#   for `eval`: sbatch, squeue and scancel need it to find this cluster.
# stop: kills the daemons by the pids start recorded and removes the folder.
#
# The state folder is $FURCATE_SLURM_DIR (default /tmp/furcate-slurm); a
# second `start` while the daemons run only prints the export line.
set -euo pipefail
dir="${FURCATE_SLURM_DIR:-/tmp/furcate-slurm}"
conf="$dir/slurm.conf"

log() { echo "slurm-local: $*" >&2; }

running() {
    [[ -f "$dir/pids" ]] || return 1
    local pid
    while read -r _ pid; do
        kill -0 "$pid" 2>/dev/null || return 1
    done <"$dir/pids"
}

install() {
    command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && return 0
    [[ $(id -u) == 0 ]] || { log "sbatch is missing and installing it needs root"; exit 1; }
    log "installing slurmctld slurmd slurm-client munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2
}

start() {
    if running; then
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    [[ $(id -u) == 0 ]] || { log "start needs root (slurmd runs jobs as their users)"; exit 1; }
    install
    rm -rf "$dir"
    mkdir -p "$dir"/{state,spool,munge,log}
    chmod 755 "$dir"
    # munged: its own socket and pid file under $dir, the key Debian's package made.
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key "$dir/munge"
    chmod 400 /etc/munge/munge.key
    chmod 700 "$dir/munge"
    local socket="$dir/munge/munge.socket"
    # slurmctld and slurmd find munged through the socket slurm.conf names.
    runuser -u munge -- munged --socket="$socket" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    cat >"$conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster for tests.
ClusterName=furcate-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${FURCATE_SLURM_PORT:-16817}
SlurmdPort=$((${FURCATE_SLURM_PORT:-16817} + 1))
MaxArraySize=100001
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    export SLURM_CONF="$conf"
    slurmctld -f "$conf" -i
    slurmd -f "$conf"
    local munged_pid="" ctld_pid="" slurmd_pid=""
    for _ in $(seq 100); do
        munged_pid=$(cat "$dir/munge/munged.pid" 2>/dev/null || true)
        ctld_pid=$(cat "$dir/slurmctld.pid" 2>/dev/null || true)
        slurmd_pid=$(cat "$dir/slurmd.pid" 2>/dev/null || true)
        [[ -n $munged_pid && -n $ctld_pid && -n $slurmd_pid ]] && break
        sleep 0.1
    done
    printf 'munged %s\nslurmctld %s\nslurmd %s\n' "$munged_pid" "$ctld_pid" "$slurmd_pid" >"$dir/pids"
    # Up when the node is idle (it takes jobs).
    for _ in $(seq 150); do
        if sinfo -h -o %t 2>/dev/null | grep -qx 'idle'; then
            log "up: $host, $cpus CPUs, state in $dir"
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.2
    done
    log "the node did not come up; logs in $dir/log"
    tail -n 20 "$dir/log/"*.log >&2 || true
    stop
    exit 1
}

stop() {
    [[ -f "$dir/pids" ]] || { log "not running (no $dir/pids)"; return 0; }
    local name pid
    # slurmd first (it runs the jobs), munged last (the others talk through it).
    for name in slurmd slurmctld munged; do
        pid=$(awk -v n="$name" '$1 == n { print $2 }' "$dir/pids")
        [[ -n $pid ]] || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
    log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) if running; then echo "running: SLURM_CONF=$conf"; else echo "not running"; exit 1; fi ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
