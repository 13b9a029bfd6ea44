#!/usr/bin/env bash
# Start and stop the real servers libpht's test suite drives: a Docker engine
# (Debian's dockerd) and image registries (Debian's docker-registry, plain and
# over TLS with a test CA, anonymous, with htpasswd basic auth and with token
# auth backed by tools/token-service.py). They listen on a unix socket and on
# 127.0.0.1 only; each keeps its state under one directory and is stopped by
# the pid recorded there, never by name.
#
# Usage: tools/services.sh COMMAND
#   start-docker    use the daemon DOCKER_HOST (or /var/run/docker.sock) names
#                   if it answers, else start a private dockerd; prints
#                   "export DOCKER_HOST=unix://..." for eval
#   stop-docker     stop the dockerd this script started (nothing otherwise)
#   start-registry  start docker-registry on 127.0.0.1:<free port>, plain
#                   HTTP; prints "export PHT_TEST_REGISTRY=127.0.0.1:PORT"
#   start-registry-tls    the same over TLS with the test CA: exports
#                   PHT_TEST_REGISTRY_TLS, PHT_TEST_REGISTRY_TLS_STORAGE and
#                   the CA (PHT_TEST_REGISTRY_CA, PHT_TEST_REGISTRY_CERT_DIR)
#   start-registry-basic  TLS and htpasswd basic auth for robot$station_2:
#                   PHT_TEST_REGISTRY_BASIC, ..._BASIC_USER, ..._BASIC_PASSWORD
#   start-registry-token  TLS and `auth: token` with a token service:
#                   PHT_TEST_REGISTRY_TOKEN, PHT_TEST_TOKEN_REALM,
#                   PHT_TEST_TOKEN_SERVICE, PHT_TEST_TOKEN_USERS (a directory
#                   for the tests' user files), PHT_TEST_TOKEN_LOG
#   stop-registry, stop-registry-tls, stop-registry-basic, stop-registry-token
#                   stop the one this script started
#   stop            stop every registry, then stop-docker
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
HERE=$(cd "$(dirname "$0")" && pwd)
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

# A child this script just started in the background ($!) is still running.
# Not `ours`: between the fork and the exec its command line is still this
# script's, and a child cannot be recycled before it is waited for.
child_running() { # $1 = pid
    [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Why a child that should be serving is not, in $why: its exit status, or a
# timeout. Not a $(...): a subshell cannot wait for its parent's child.
why_not() { # $1 = pid, $2 = seconds waited
    local rc=0
    if child_running "$1"; then
        why="no answer within $2 s"
    else
        wait "$1" 2>/dev/null || rc=$?
        why="it exited with status $rc"
    fi
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

# Quote a value for the exports the caller evals (no value holds a ').
export_line() { printf "export %s='%s'\n" "$1" "$2"; }

# Print the exports of one env file: its PHT_TEST_* lines.
print_env_file() { # $1 = env file
    local k v
    [ -r "$1" ] || return 0
    while IFS='=' read -r k v; do
        case "$k" in PHT_TEST_*) export_line "$k" "$v" ;; esac
    done <"$1"
}

# The HTTP status of GET $1 (curl options follow); 000 when nothing answers.
http_status() { # $1 = URL, $@ = more curl options
    local url=$1
    shift
    curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null || true
}

# The TLS registries share one CA, made here with the openssl CLI: a P-256 CA,
# a server certificate for 127.0.0.1 and localhost, and a certs/ directory
# laid out as skopeo's --cert-dir wants it (ca.crt). It lives while one of
# them does.
CA_DIR="$S/registry-ca"
TLS_REGISTRIES="registry-tls registry-basic registry-token"
REGISTRIES="registry $TLS_REGISTRIES"

make_ca() {
    [ -s "$CA_DIR/server.crt" ] && [ -s "$CA_DIR/certs/ca.crt" ] && return 0
    command -v openssl >/dev/null || die "no openssl: run tools/install-deps.sh"
    rm -rf "$CA_DIR"
    mkdir -p "$CA_DIR/certs"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes) log="$CA_DIR/openssl.log"
    {
        openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=libpht test registry CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$CA_DIR/ca.key" -out "$CA_DIR/ca.crt" &&
        openssl req "${ec[@]}" -subj "/CN=127.0.0.1" \
            -keyout "$CA_DIR/server.key" -out "$CA_DIR/server.csr" &&
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$CA_DIR/server.ext" &&
        openssl x509 -req -in "$CA_DIR/server.csr" -CA "$CA_DIR/ca.crt" -CAkey "$CA_DIR/ca.key" \
            -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 30 \
            -extfile "$CA_DIR/server.ext" -out "$CA_DIR/server.crt"
    } >"$log" 2>&1 || { cat "$log" >&2; rm -rf "$CA_DIR"; die "openssl could not make the test CA"; }
    cp "$CA_DIR/ca.crt" "$CA_DIR/certs/ca.crt"
    chmod 600 "$CA_DIR/ca.key" "$CA_DIR/server.key"
}

drop_ca_if_unused() {
    local n
    for n in $TLS_REGISTRIES; do [ -e "$S/$n" ] && return 0; done
    rm -rf "$CA_DIR"
}

# Start docker-registry with state directory $S/$1 on a free 127.0.0.1 port;
# $2 = http, or https with the CA's server pair; $3 = more top-level YAML (an
# auth: section); $4 = "on" for an access log in registry.log (specs count
# requests there). Waits until GET /v2/ answers 200, or 401 where the
# registry wants credentials. Sets $addr.
launch_registry() {
    local name=$1 scheme=$2 top=${3:-} accesslog=${4:-off} d="$S/$1" port pid code tls="" curlopt=() why
    command -v docker-registry >/dev/null || die "no docker-registry: run tools/install-deps.sh --test"
    command -v curl >/dev/null || die "no curl: run tools/install-deps.sh --test"
    if [ "$scheme" = https ]; then
        tls=$'\n  tls:\n    certificate: '"$CA_DIR/server.crt"$'\n    key: '"$CA_DIR/server.key"
        curlopt=(--cacert "$CA_DIR/ca.crt")
    fi
    for _ in 1 2 3 4 5; do
        rm -rf "$d/data"
        mkdir -p "$d/data"
        port=$(free_port) || die "no free port on 127.0.0.1"
        addr="127.0.0.1:$port"
        cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $([ "$accesslog" = on ] && echo false || echo true)
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
  secret: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')$tls
$top
EOF
        setsid docker-registry serve "$d/config.yml" </dev/null >"$d/registry.log" 2>&1 &
        pid=$!
        echo "$pid" >"$d/registry.pid"
        for _ in $(seq 300); do
            code=$(http_status "$scheme://$addr/v2/" "${curlopt[@]}")
            if [ "$code" = 200 ] || [ "$code" = 401 ]; then
                say "started docker-registry $name (pid $pid) on $scheme://$addr"
                return 0
            fi
            child_running "$pid" || break
            sleep 0.1
        done
        if grep -q 'address already in use' "$d/registry.log"; then
            end_pid "$pid" docker-registry 5
            continue # lost a race for the port: pick another
        fi
        why_not "$pid" 30
        say "docker-registry $name did not answer on $addr ($why); last lines of $d/registry.log:"
        tail -n 25 "$d/registry.log" >&2 || true
        end_pid "$pid" docker-registry 5
        rm -rf "$d"
        die "docker-registry $name could not start ($why)"
    done
    die "docker-registry $name found no free port after 5 tries"
}

# Stop the registry (and its token service) with state directory $S/$1.
stop_named() { # $1 = registry, registry-tls, registry-basic or registry-token
    local d="$S/$1"
    [ -e "$d" ] || { rm -f "$S/$1.env"; return 0; }
    end_pid "$(cat "$d/registry.pid" 2>/dev/null || true)" docker-registry 10
    if [ -e "$d/token-service.pid" ]; then
        end_pid "$(cat "$d/token-service.pid" 2>/dev/null || true)" token-service.py 10
    fi
    rm -rf "$d" "$S/$1.env"
    case " $TLS_REGISTRIES " in *" $1 "*) drop_ca_if_unused ;; esac
    say "stopped docker-registry $1"
}

# Already up from an earlier start on this state directory: print its exports.
still_up() { # $1 = name, $2 = the env key holding its address, $3 = scheme
    local a code
    a=$(env_get "$S/$1.env" "$2") || return 1
    code=$(http_status "$3://$a/v2/" --cacert "$CA_DIR/ca.crt")
    [ "$code" = 200 ] || [ "$code" = 401 ] || return 1
    print_env_file "$S/$1.env"
}

# Make way for a new start of $1, unless it is up already: then its exports
# are printed and this fails, so the caller returns.
fresh_start() { # $1 = name, $2 = the env key holding its address, $3 = scheme
    mkdir -p "$S"
    still_up "$1" "$2" "$3" && return 1
    stop_named "$1" >/dev/null 2>&1 || true
    mkdir -p "$S/$1"
}

# Keep the exports read on stdin as $S/$1.env (mode 0600) and print them.
write_env() { # $1 = name
    (umask 077 && cat >"$S/$1.env")
    print_env_file "$S/$1.env"
}

# Plain HTTP, anonymous.
start_registry() {
    fresh_start registry PHT_TEST_REGISTRY http || return 0
    launch_registry registry http
    printf 'PHT_TEST_REGISTRY=%s\n' "$addr" | write_env registry
}

ca_env() {
    printf 'PHT_TEST_REGISTRY_CA=%s\nPHT_TEST_REGISTRY_CERT_DIR=%s\n' "$CA_DIR/ca.crt" "$CA_DIR/certs"
}

# TLS with the test CA, anonymous.
start_registry_tls() {
    fresh_start registry-tls PHT_TEST_REGISTRY_TLS https || return 0
    make_ca
    launch_registry registry-tls https "" on
    {
        printf 'PHT_TEST_REGISTRY_TLS=%s\nPHT_TEST_REGISTRY_TLS_STORAGE=%s\n' "$addr" "$S/registry-tls/data"
        ca_env
    } | write_env registry-tls
}

# TLS and htpasswd basic auth with one user, a Harbor-style robot account;
# its password is made here and hashed with bcrypt (apache2-utils' htpasswd),
# the only hash the registry accepts.
start_registry_basic() {
    fresh_start registry-basic PHT_TEST_REGISTRY_BASIC https || return 0
    command -v htpasswd >/dev/null || die "no htpasswd: run tools/install-deps.sh --test"
    make_ca
    local d="$S/registry-basic" user='robot$station_2' pass
    pass=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s\n' "$pass" | htpasswd -icB -C 5 "$d/htpasswd" "$user" 2>"$d/htpasswd.log" \
        || { cat "$d/htpasswd.log" >&2; rm -rf "$d"; die "htpasswd failed"; }
    launch_registry registry-basic https \
        "$(printf 'auth:\n  htpasswd:\n    realm: pht-test-registry\n    path: %s' "$d/htpasswd")" on
    {
        printf 'PHT_TEST_REGISTRY_BASIC=%s\nPHT_TEST_REGISTRY_BASIC_USER=%s\n' "$addr" "$user"
        printf 'PHT_TEST_REGISTRY_BASIC_PASSWORD=%s\n' "$pass"
        ca_env
    } | write_env registry-basic
}

# TLS and `auth: token`: tools/token-service.py issues the JWTs, signed with a
# P-256 key whose self-signed certificate is the registry's rootcertbundle,
# so the registry's own token verification decides. Users and the
# repositories they may use: *.json files a test writes into
# $PHT_TEST_TOKEN_USERS (the format is in tools/token-service.py).
start_registry_token() {
    fresh_start registry-token PHT_TEST_REGISTRY_TOKEN https || return 0
    command -v python3 >/dev/null || die "no python3: run tools/install-deps.sh --test"
    python3 -c 'import cryptography' 2>/dev/null \
        || die "no python3-cryptography: run tools/install-deps.sh --test"
    make_ca
    local d="$S/registry-token" tport tpid realm started=0 why
    local service=pht-test-registry issuer=pht-test-token-service
    mkdir -p "$d/users.d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=libpht test token signer" -keyout "$d/signer.key" -out "$d/signer.crt" \
        >"$d/openssl.log" 2>&1 \
        || { cat "$d/openssl.log" >&2; rm -rf "$d"; die "openssl could not make the token signer"; }
    for _ in 1 2 3 4 5; do
        tport=$(free_port) || die "no free port on 127.0.0.1"
        setsid python3 "$HERE/token-service.py" --listen "127.0.0.1:$tport" \
            --cert "$CA_DIR/server.crt" --key "$CA_DIR/server.key" \
            --signing-cert "$d/signer.crt" --signing-key "$d/signer.key" \
            --issuer "$issuer" --service "$service" --users "$d/users.d" --log "$d/token.log" \
            </dev/null >"$d/token-service.log" 2>&1 &
        tpid=$!
        echo "$tpid" >"$d/token-service.pid"
        for _ in $(seq 300); do
            if [ "$(http_status "https://127.0.0.1:$tport/health" --cacert "$CA_DIR/ca.crt")" = 200 ]; then
                started=1
                break
            fi
            child_running "$tpid" || break
            sleep 0.1
        done
        [ "$started" = 1 ] && break
        why_not "$tpid" 30
        end_pid "$tpid" token-service.py 5
        grep -q 'Address already in use' "$d/token-service.log" && continue
        say "the token service did not answer on 127.0.0.1:$tport ($why); last lines of $d/token-service.log:"
        tail -n 25 "$d/token-service.log" >&2 || true
        rm -rf "$d"
        die "the token service could not start ($why)"
    done
    [ "$started" = 1 ] || die "the token service found no free port after 5 tries"
    realm="https://127.0.0.1:$tport/token"
    say "started the token service (pid $tpid) at $realm"
    launch_registry registry-token https "$(printf 'auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s' \
        "$realm" "$service" "$issuer" "$d/signer.crt")" on
    {
        printf 'PHT_TEST_REGISTRY_TOKEN=%s\nPHT_TEST_TOKEN_REALM=%s\nPHT_TEST_TOKEN_SERVICE=%s\n' \
            "$addr" "$realm" "$service"
        printf 'PHT_TEST_TOKEN_USERS=%s\nPHT_TEST_TOKEN_LOG=%s\n' "$d/users.d" "$d/token.log"
        ca_env
    } | write_env registry-token
}

print_env() {
    local v n
    if v=$(env_get "$S/docker.env" DOCKER_HOST); then echo "export DOCKER_HOST=$v"; fi
    for n in $REGISTRIES; do print_env_file "$S/$n.env"; done
    return 0
}

status() {
    local v n key scheme code
    if v=$(env_get "$S/docker.env" DOCKER_HOST) && docker_answers "$v"; then
        echo "docker: up at $v ($( [ "$(env_get "$S/docker.env" DOCKER_OWNED)" = 1 ] && echo "started here" || echo "not ours"))"
    else
        echo "docker: down"
    fi
    for n in $REGISTRIES; do
        key=PHT_TEST_$(echo "$n" | tr 'a-z-' 'A-Z_')
        scheme=https
        [ "$n" = registry ] && scheme=http
        code=000
        if v=$(env_get "$S/$n.env" "$key"); then
            code=$(http_status "$scheme://$v/v2/" --cacert "$CA_DIR/ca.crt")
        fi
        if [ "$code" = 200 ] || [ "$code" = 401 ]; then echo "$n: up at $scheme://$v"; else echo "$n: down"; fi
    done
}

case "${1:-}" in
    start-docker) start_docker ;;
    stop-docker) stop_docker ;;
    start-registry) start_registry ;;
    start-registry-tls) start_registry_tls ;;
    start-registry-basic) start_registry_basic ;;
    start-registry-token) start_registry_token ;;
    stop-registry | stop-registry-tls | stop-registry-basic | stop-registry-token) stop_named "${1#stop-}" ;;
    stop)
        for n in $REGISTRIES; do stop_named "$n"; done
        stop_docker
        rmdir "$S" 2>/dev/null || true
        ;;
    env) print_env ;;
    status) status ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' ;;
    *) sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
