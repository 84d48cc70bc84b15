#!/usr/bin/env bash
# Brings up a second private Docker daemon that listens on TCP behind mutual TLS, for the tests of
# rt-cleanup's TLS transport (docs/contract.md section 4: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).
#
#   scripts/test-tls-daemon.sh start  # prints shell assignments: eval "$(scripts/test-tls-daemon.sh start)"
#   scripts/test-tls-daemon.sh stop   # stops the daemon this script started, if any
#
# `start` says in RT_CLEANUP_TEST_TLS_STARTED whether it started the daemon (yes) or reused one
# already running (no).
#
# Everything lives under $RT_CLEANUP_TEST_TLS_ROOT (default /tmp/rt-cleanup-test-tls): the
# certificates, and a dockerd with its own data root, exec root, pid file and unix socket, no
# bridge and no iptables, so it collides neither with the test daemon of scripts/test-daemon.sh
# nor with any other daemon of the machine. It listens on tcp://127.0.0.1:PORT with
# --tlsverify: only clients with a certificate of its CA get in.
#
# The certificates are made with openssl each time the daemon is started, laid out as the Docker
# CLI reads them from DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), one directory per case:
#
#   certs/client             the right CA and a client certificate of it: the good case
#   certs/client-other-ca    the right CA, but a client certificate of another CA: the daemon
#                            refuses the handshake
#   certs/client-no-cert     the right CA only, no client certificate: the daemon refuses it too
#   certs/client-wrong-ca    the other CA as ca.pem (with the good client certificate): the client
#                            must refuse the daemon's certificate
#
# Debian's docker.io, openssl and busybox-static are installed first when missing.
set -euo pipefail

ROOT=${RT_CLEANUP_TEST_TLS_ROOT:-/tmp/rt-cleanup-test-tls}
CERTS="$ROOT/certs"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
LOG="$ROOT/dockerd.log"
IMAGE=${RT_CLEANUP_TEST_IMAGE:-rt-cleanup-test/busybox:1}
# The first free port from here on is taken (and remembered in $ROOT/port for a restart).
FIRST_PORT=${RT_CLEANUP_TEST_TLS_PORT:-23760}

log() { printf 'test-tls-daemon: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# A process that has exited but is not yet reaped still answers kill -0.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Whether a pid is the dockerd of this root (a stale pid file must not make `stop` kill whatever
# process has that pid now).
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--pidfile $PIDFILE"; }

# Whether something listens on 127.0.0.1:PORT (bash's /dev/tcp: no ss or netstat needed).
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

reachable_unix() { DOCKER_HOST="unix://$SOCK" timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

# The way an operator would: the CLI with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
reachable_tls() {
  DOCKER_HOST="tcp://127.0.0.1:$1" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS/client" \
    timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1
}

# make_certs: a CA, a server certificate for 127.0.0.1, a client certificate; a second CA with a
# client certificate of its own. RSA 2048 and SHA-256, X.509 v3 with the extensions that both Go's
# crypto/tls (dockerd) and webpki (rustls) require: CA:TRUE and keyCertSign on the CAs,
# subjectAltName=IP:127.0.0.1 and serverAuth on the server, clientAuth on the clients.
make_certs() {
  local work=$CERTS/.work
  rm -rf "$CERTS"
  mkdir -p "$work" "$CERTS"/{client,client-other-ca,client-no-cert,client-wrong-ca}
  chmod 700 "$CERTS"
  ca() { # NAME
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 30 \
      -keyout "$work/$1-key.pem" -out "$work/$1.pem" -subj "/CN=rt-cleanup test $1" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  }
  leaf() { # NAME CA CN EXTENSIONS
    printf '%s\n' "$4" >"$work/$1.ext"
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$work/$1-key.pem" \
      -out "$work/$1.csr" -subj "/CN=$3" 2>/dev/null
    openssl x509 -req -sha256 -days 30 -in "$work/$1.csr" -CA "$work/$2.pem" \
      -CAkey "$work/$2-key.pem" -CAcreateserial -out "$work/$1.pem" -extfile "$work/$1.ext" \
      2>/dev/null
  }
  ca ca
  ca other-ca
  leaf server ca 127.0.0.1 "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1"
  local client_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf client ca rt-cleanup-test-client "$client_ext"
  leaf other-client other-ca rt-cleanup-test-other-client "$client_ext"
  # The daemon's own files.
  cp "$work/ca.pem" "$CERTS/ca.pem"
  cp "$work/server.pem" "$CERTS/server-cert.pem"
  cp "$work/server-key.pem" "$CERTS/server-key.pem"
  # The clients' directories, as DOCKER_CERT_PATH.
  cp "$work/ca.pem" "$CERTS/client/ca.pem"
  cp "$work/client.pem" "$CERTS/client/cert.pem"
  cp "$work/client-key.pem" "$CERTS/client/key.pem"
  cp "$work/ca.pem" "$CERTS/client-other-ca/ca.pem"
  cp "$work/other-client.pem" "$CERTS/client-other-ca/cert.pem"
  cp "$work/other-client-key.pem" "$CERTS/client-other-ca/key.pem"
  cp "$work/ca.pem" "$CERTS/client-no-cert/ca.pem"
  cp "$work/other-ca.pem" "$CERTS/client-wrong-ca/ca.pem"
  cp "$work/client.pem" "$CERTS/client-wrong-ca/cert.pem"
  cp "$work/client-key.pem" "$CERTS/client-wrong-ca/key.pem"
  rm -rf "$work"
  openssl verify -CAfile "$CERTS/ca.pem" "$CERTS/server-cert.pem" "$CERTS/client/cert.pem" \
    >/dev/null || die "the certificates made do not verify against their CA"
}

start_private() {
  [ "$(id -u)" = 0 ] || die "a private dockerd needs root"
  mkdir -p "$ROOT"
  if [ -f "$ROOT/port" ] && [ -S "$SOCK" ] && reachable_unix && reachable_tls "$(cat "$ROOT/port")"; then
    PORT=$(cat "$ROOT/port")
    log "reusing the private TLS dockerd at tcp://127.0.0.1:$PORT"
    STARTED=no
    return 0
  fi
  STARTED=yes
  if [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")" && alive "$(cat "$PIDFILE")"; then
    die "a dockerd ($(cat "$PIDFILE")) of $ROOT runs but does not answer; run $0 stop first"
  fi
  PORT=$FIRST_PORT
  while port_taken "$PORT"; do
    PORT=$((PORT + 1))
    [ "$PORT" -lt $((FIRST_PORT + 100)) ] || die "no free port in $FIRST_PORT..$((FIRST_PORT + 99))"
  done
  echo "$PORT" >"$ROOT/port"
  make_certs
  rm -f "$SOCK"
  log "starting a private dockerd on tcp://127.0.0.1:$PORT (TLS) and unix://$SOCK (log: $LOG)"
  # The unix socket is for setting up (the image) and for tests that need to act on the daemon
  # behind rt-cleanup's back; TCP is TLS-only (--tlsverify: a client certificate of the CA is
  # required). --debug logs each request path, as the plain test daemon does.
  # From /, as a daemon should run: a process inherits its working directory, and one that
  # was removed under it (a deleted checkout) makes conmon fail "Failed to get working
  # directory" on every container start.
  (cd / && exec setsid dockerd --debug \
    --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$PIDFILE" \
    --host "unix://$SOCK" --host "tcp://127.0.0.1:$PORT" \
    --tlsverify --tlscacert "$CERTS/ca.pem" --tlscert "$CERTS/server-cert.pem" \
    --tlskey "$CERTS/server-key.pem" \
    --bridge=none --iptables=false --ip-masq=false \
    >"$LOG" 2>&1 </dev/null) &
  for _ in $(seq 1 120); do
    reachable_unix && break
    sleep 0.25
  done
  reachable_unix || { tail -n 20 "$LOG" >&2 || true; die "the private TLS dockerd did not answer within 30s (log above)"; }
  reachable_tls "$PORT" || {
    tail -n 20 "$LOG" >&2 || true
    die "the private dockerd answers on its unix socket but not over TLS on 127.0.0.1:$PORT"
  }
}

build_image() {
  if DOCKER_HOST="unix://$SOCK" docker image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  log "building $IMAGE with docker import from /bin/busybox"
  "$(dirname "$0")/test-image-rootfs.sh" | DOCKER_HOST="unix://$SOCK" docker import \
    -c 'CMD ["/bin/busybox", "sleep", "3600"]' - "$IMAGE" >/dev/null
}

case "${1:-start}" in
  start)
    "$(dirname "$0")/ensure-packages.sh" dockerd=docker.io docker=docker.io openssl=openssl \
      /bin/busybox=busybox-static
    start_private
    build_image
    echo "export RT_CLEANUP_TEST_TLS_HOST='tcp://127.0.0.1:$PORT'"
    echo "export RT_CLEANUP_TEST_TLS_CERTS='$CERTS/client'"
    echo "export RT_CLEANUP_TEST_TLS_CERTS_OTHER_CA='$CERTS/client-other-ca'"
    echo "export RT_CLEANUP_TEST_TLS_CERTS_NO_CLIENT_CERT='$CERTS/client-no-cert'"
    echo "export RT_CLEANUP_TEST_TLS_CERTS_WRONG_CA='$CERTS/client-wrong-ca'"
    echo "export RT_CLEANUP_TEST_TLS_UNIX_HOST='unix://$SOCK'"
    echo "export RT_CLEANUP_TEST_TLS_LOG='$LOG'"
    echo "export RT_CLEANUP_TEST_TLS_PIDFILE='$PIDFILE'"
    # Whether this call started it (yes) or found it running (no).
    echo "export RT_CLEANUP_TEST_TLS_STARTED='$STARTED'"
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      if ! ours "$pid"; then
        log "pid $pid of $PIDFILE is not the private TLS dockerd; nothing to stop"
        exit 0
      fi
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do alive "$pid" || break; sleep 0.25; done
      if alive "$pid"; then
        log "the private TLS dockerd ($pid) did not stop within 15s"
      else
        log "stopped the private TLS dockerd ($pid)"
      fi
    fi
    ;;
  *) die "usage: $0 start|stop" ;;
esac
