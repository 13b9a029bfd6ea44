#!/usr/bin/env bash
# Start and stop the real servers libpht's test suite drives: a Docker engine
# (Debian's dockerd) and an image registry (Debian's docker-registry). They
# listen on a unix socket and on 127.0.0.1 only; each keeps its state under
# one directory and is stopped by the pid recorded there, never by name.
#
# Usage: tools/services.sh COMMAND
#   start-docker    use the daemon DOCKER_HOST (or /var/run/docker.sock) names
#                   if it answers, else start a private dockerd; prints
#                   "export DOCKER_HOST=unix://..." for eval
#   stop-docker     stop the dockerd this script started (nothing otherwise)
#   start-registry  start docker-registry on 127.0.0.1:<free port>; prints
#                   "export PHT_TEST_REGISTRY=127.0.0.1:PORT" for eval
#   stop-registry   stop the registry this script started
#   stop            stop-registry, then stop-docker
#   env             print the exports of the services that are up
#   status          say what is running, where
# Environment:
#   PHT_SERVICES_DIR          state directory (default /tmp/pht-services)
#   PHT_DOCKER_START_TIMEOUT  seconds to wait for dockerd (default 60)
#   PHT_DOCKER_PRIVATE=1      always start a private dockerd, even when
#                             another daemon answers
#   PHT_DOCKER_STORAGE_DRIVER storage driver of a private dockerd (default:
#                             overlay2 where the kernel mounts overlay, else vfs)
set -euo pipefail

S=${PHT_SERVICES_DIR:-/tmp/pht-services}
me="services"
say() { echo "$me: $*" >&2; }
die() { echo "$me: $*" >&2; exit 1; }

# A pid is ours only while it runs the program we started with our state
# directory on its command line: guards against a recycled pid.
ours() { # $1 = pid, $2 = program name
    local pid=$1 cmd
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ "$cmd" == *"$2"* && "$cmd" == *"$S"* ]]
}

# Wait up to $2 seconds for pid $1 to end; 0 when it did.
wait_gone() {
    local pid=$1 n=$(( $2 * 10 ))
    while [ "$n" -gt 0 ]; do
        [ -r "/proc/$pid/stat" ] || return 0
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 0
        sleep 0.1; n=$((n - 1))
    done
    return 1
}

# Ask politely, then insist.
end_pid() { # $1 = pid, $2 = program name, $3 = grace seconds
    ours "$1" "$2" || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    wait_gone "$1" "$3" && return 0
    say "$2 (pid $1) did not stop within $3 s; killing it"
    kill -KILL "$1" 2>/dev/null || true
    wait_gone "$1" 5 || say "$2 (pid $1) is still there"
}

# Engine processes (the managed containerd, its shims, runc) whose command
# line names our state directory, should dockerd have left any behind.
leftovers() {
    local p cmd comm
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        case "$comm" in dockerd|containerd*|runc|docker-init|docker-proxy) ;; *) continue ;; esac
        cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        [[ "$cmd" == *"$S/docker/"* ]] && echo "$p"
    done
    return 0
}

# Unmount whatever is still mounted under a directory, deepest first.
unmount_under() { # $1 = directory
    local m
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo \
        | sort -r | while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}

env_get() { # $1 = env file, $2 = key
    [ -r "$1" ] || return 1
    sed -n "s/^$2=//p" "$1" | tail -1
}

# The storage driver for a private dockerd: $PHT_DOCKER_STORAGE_DRIVER when
# set, else overlay2 (what stations run) when this kernel mounts an overlay
# on the file system under $1, else vfs (slow, but needs no mounts).
storage_driver() { # $1 = the daemon's state directory
    if [ -n "${PHT_DOCKER_STORAGE_DRIVER:-}" ]; then
        echo "$PHT_DOCKER_STORAGE_DRIVER"; return 0
    fi
    local t="$1/overlay-probe" driver=vfs
    mkdir -p "$t/lower" "$t/upper" "$t/work" "$t/merged"
    if mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" \
            "$t/merged" 2>/dev/null; then
        driver=overlay2
        umount "$t/merged" 2>/dev/null || umount -l "$t/merged" 2>/dev/null || true
    fi
    rm -rf "$t"
    echo "$driver"
}

docker_answers() { # $1 = DOCKER_HOST value
    DOCKER_HOST=$1 timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

start_docker() {
    mkdir -p "$S"
    local envf="$S/docker.env" host
    command -v docker >/dev/null || die "no docker client: run tools/install-deps.sh --test"

    # Already up from an earlier start-docker on this state directory.
    if host=$(env_get "$envf" DOCKER_HOST) && docker_answers "$host"; then
        echo "export DOCKER_HOST=$host"; return 0
    fi
    rm -f "$envf"

    # A daemon that already runs on this machine.
    if [ "${PHT_DOCKER_PRIVATE:-0}" != 1 ]; then
        for host in "${DOCKER_HOST:-}" unix:///var/run/docker.sock; do
            [ -n "$host" ] || continue
            [[ "$host" == *"$S/"* ]] && continue # our own, gone
            if docker_answers "$host"; then
                printf 'DOCKER_HOST=%s\nDOCKER_OWNED=0\n' "$host" >"$envf"
                say "using the running Docker daemon at $host"
                echo "export DOCKER_HOST=$host"; return 0
            fi
        done
    fi

    # Our own dockerd: Debian's, private data/exec roots, no networking
    # changes to the host (no iptables, no bridge, no ip_forward), overlay2
    # where the kernel allows (the driver stations run; vfs copies every
    # layer and hides what a step really costs), and an empty config so
    # /etc/docker/daemon.json cannot contradict these flags.
    [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root (or a running daemon in DOCKER_HOST)"
    local b
    for b in dockerd containerd runc; do
        command -v "$b" >/dev/null || die "no $b: run tools/install-deps.sh --test"
    done
    local d="$S/docker" sock="$S/docker.sock"
    [ "${#sock}" -lt 100 ] || die "socket path $sock is too long for a unix socket; set a shorter PHT_SERVICES_DIR"
    if [ -e "$d/dockerd.pid" ] && ours "$(cat "$d/dockerd.pid")" dockerd; then
        die "a dockerd from $S (pid $(cat "$d/dockerd.pid")) runs but does not answer; run: $0 stop-docker"
    fi
    rm -rf "$d" "$sock"
    mkdir -p "$d/data" "$d/exec"
    echo '{}' >"$d/daemon.json"
    local driver
    driver=$(storage_driver "$d")
    # In a network namespace of its own (when util-linux's unshare can make
    # one), where IPv4 forwarding is off whatever the host says: the daemon
    # then warns "IPv4 forwarding is disabled" on every container on the
    # default network, as many station hosts' do, and the specs must read
    # ids and output from stdout only. It talks to clients on its unix socket
    # only, so it needs no network of its own.
    local netns=()
    if command -v unshare >/dev/null && unshare --net true 2>/dev/null; then netns=(unshare --net); fi
    setsid "${netns[@]}" dockerd \
        --config-file "$d/daemon.json" \
        --host "unix://$sock" \
        --data-root "$d/data" \
        --exec-root "$d/exec" \
        --pidfile "$d/dockerd.pid" \
        --storage-driver="$driver" \
        --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
        --userland-proxy=false \
        --exec-opt native.cgroupdriver=cgroupfs \
        </dev/null >"$d/dockerd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$d/launch.pid"

    local limit=${PHT_DOCKER_START_TIMEOUT:-60} t=0
    while ! docker_answers "unix://$sock"; do
        if ! ours "$pid" dockerd; then
            say "dockerd exited while starting; last lines of $d/dockerd.log:"
            tail -n 25 "$d/dockerd.log" >&2 || true
            cp "$d/dockerd.log" "$S/dockerd-failed.log" 2>/dev/null || true
            stop_docker_owned >/dev/null 2>&1 || true
            die "dockerd could not start (log kept in $S/dockerd-failed.log)"
        fi
        if [ "$t" -ge "$limit" ]; then
            say "dockerd did not answer on $sock within $limit s; last lines of $d/dockerd.log:"
            tail -n 25 "$d/dockerd.log" >&2 || true
            cp "$d/dockerd.log" "$S/dockerd-failed.log" 2>/dev/null || true
            stop_docker_owned >/dev/null 2>&1 || true
            die "dockerd could not start (log kept in $S/dockerd-failed.log)"
        fi
        sleep 1; t=$((t + 1))
    done
    printf 'DOCKER_HOST=unix://%s\nDOCKER_OWNED=1\nDOCKER_STORAGE_DRIVER=%s\n' "$sock" "$driver" >"$envf"
    say "started dockerd (pid $pid, storage driver $driver) on unix://$sock"
    echo "export DOCKER_HOST=unix://$sock"
}

# Stop the private dockerd and remove everything it made.
stop_docker_owned() {
    local d="$S/docker" sock="$S/docker.sock" pid p
    pid=$(cat "$d/dockerd.pid" 2>/dev/null || cat "$d/launch.pid" 2>/dev/null || true)
    if ours "$pid" dockerd; then
        # Every container on this daemon is a test's: remove them first so
        # dockerd does not wait on them and no shim outlives it.
        local ids
        ids=$(DOCKER_HOST="unix://$sock" timeout 30 docker ps -aq 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            DOCKER_HOST="unix://$sock" timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
        fi
        end_pid "$pid" dockerd 30
    fi
    for p in $(leftovers); do
        say "ending leftover process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80)"
        kill -KILL "$p" 2>/dev/null || true
    done
    unmount_under "$d"
    rm -rf "$d" "$sock" "$S/docker.env"
}

stop_docker() {
    local envf="$S/docker.env"
    if [ "$(env_get "$envf" DOCKER_OWNED || echo 1)" = 0 ]; then
        rm -f "$envf" # not ours to stop
        return 0
    fi
    [ -e "$S/docker" ] || { rm -f "$envf"; return 0; }
    stop_docker_owned
    say "stopped dockerd"
}

# A port on 127.0.0.1 nothing listens on now.
free_port() {
    local port
    for _ in $(seq 50); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"; return 0
        fi
    done
    return 1
}

start_registry() {
    mkdir -p "$S"
    local envf="$S/registry.env" d="$S/registry" addr pid
    command -v docker-registry >/dev/null || die "no docker-registry: run tools/install-deps.sh --test"
    command -v curl >/dev/null || die "no curl: run tools/install-deps.sh --test"
    if addr=$(env_get "$envf" PHT_TEST_REGISTRY) \
        && curl -fsS -o /dev/null --max-time 5 "http://$addr/v2/"; then
        echo "export PHT_TEST_REGISTRY=$addr"; return 0
    fi
    stop_registry >/dev/null 2>&1 || true

    local port t
    for _ in 1 2 3 4 5; do
        rm -rf "$d"; mkdir -p "$d/data"
        port=$(free_port) || die "no free port on 127.0.0.1"
        addr="127.0.0.1:$port"
        cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
EOF
        setsid docker-registry serve "$d/config.yml" </dev/null >"$d/registry.log" 2>&1 &
        pid=$!
        echo "$pid" >"$d/registry.pid"
        for t in $(seq 100); do
            if curl -fsS -o /dev/null --max-time 2 "http://$addr/v2/" 2>/dev/null; then
                printf 'PHT_TEST_REGISTRY=%s\n' "$addr" >"$envf"
                say "started docker-registry (pid $pid) on $addr"
                echo "export PHT_TEST_REGISTRY=$addr"; return 0
            fi
            ours "$pid" docker-registry || break
            sleep 0.2
        done
        if grep -q 'address already in use' "$d/registry.log"; then
            end_pid "$pid" docker-registry 5
            continue # lost a race for the port: pick another
        fi
        say "docker-registry did not answer on $addr; last lines of $d/registry.log:"
        tail -n 25 "$d/registry.log" >&2 || true
        end_pid "$pid" docker-registry 5
        rm -rf "$d"
        die "docker-registry could not start"
    done
    die "docker-registry found no free port after 5 tries"
}

stop_registry() {
    local d="$S/registry"
    [ -e "$d" ] || { rm -f "$S/registry.env"; return 0; }
    end_pid "$(cat "$d/registry.pid" 2>/dev/null || true)" docker-registry 10
    rm -rf "$d" "$S/registry.env"
    say "stopped docker-registry"
}

print_env() {
    local v
    if v=$(env_get "$S/docker.env" DOCKER_HOST); then echo "export DOCKER_HOST=$v"; fi
    if v=$(env_get "$S/registry.env" PHT_TEST_REGISTRY); then echo "export PHT_TEST_REGISTRY=$v"; fi
    return 0
}

status() {
    local v
    if v=$(env_get "$S/docker.env" DOCKER_HOST) && docker_answers "$v"; then
        echo "docker: up at $v ($( [ "$(env_get "$S/docker.env" DOCKER_OWNED)" = 1 ] && echo "started here" || echo "not ours"))"
    else
        echo "docker: down"
    fi
    if v=$(env_get "$S/registry.env" PHT_TEST_REGISTRY) \
        && curl -fsS -o /dev/null --max-time 5 "http://$v/v2/"; then
        echo "registry: up at $v"
    else
        echo "registry: down"
    fi
}

case "${1:-}" in
    start-docker) start_docker ;;
    stop-docker) stop_docker ;;
    start-registry) start_registry ;;
    stop-registry) stop_registry ;;
    stop) stop_registry; stop_docker; rmdir "$S" 2>/dev/null || true ;;
    env) print_env ;;
    status) status ;;
    -h|--help|help) sed -n '2,24p' "$0" ;;
    *) sed -n '7,17p' "$0" >&2; exit 2 ;;
esac
