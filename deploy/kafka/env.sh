# Sourced by start.sh and stop.sh: where the local broker lives and listens.
# Every value can be overridden from the environment:
#   SAEWATCH_KAFKA_HOST             listen address                    (127.0.0.1)
#   SAEWATCH_KAFKA_PORT             client (PLAINTEXT) port           (9092)
#   SAEWATCH_KAFKA_CONTROLLER_PORT  KRaft controller port             (client port + 1)
#   SAEWATCH_KAFKA_CACHE            jars and default run folders      (<repo>/.cache/kafka)
#   SAEWATCH_KAFKA_RUN_DIR          this broker's data, logs, pid     (<cache>/run-<port>)
#   SAEWATCH_KAFKA_HEAP_OPTS        JVM heap                          (-Xms128m -Xmx512m)
#   SAEWATCH_KAFKA_START_TIMEOUT    seconds to wait for readiness     (120)
#   SAEWATCH_KAFKA_STOP_TIMEOUT     seconds to wait for a clean stop  (30)
#   SAEWATCH_KAFKA_SECURE           1: also serve SASL_SSL and SASL_PLAINTEXT (0; start.sh --secure)
#   SAEWATCH_KAFKA_SASL_SSL_PORT    SASL_SSL port, SCRAM over TLS     (client port + 2)
#   SAEWATCH_KAFKA_SASL_PLAINTEXT_PORT  SASL_PLAINTEXT port, SCRAM    (client port + 3)
# shellcheck shell=bash

KAFKA_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KAFKA_DEPLOY_DIR/../.." && pwd)"

KAFKA_HOST="${SAEWATCH_KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${SAEWATCH_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SAEWATCH_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_CACHE="${SAEWATCH_KAFKA_CACHE:-$REPO_ROOT/.cache/kafka}"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_RUN_DIR="${SAEWATCH_KAFKA_RUN_DIR:-$KAFKA_CACHE/run-$KAFKA_PORT}"
KAFKA_DATA_DIR="$KAFKA_RUN_DIR/data"
KAFKA_LOG_DIR="$KAFKA_RUN_DIR/logs"
KAFKA_CONFIG="$KAFKA_RUN_DIR/server.properties"
KAFKA_PID_FILE="$KAFKA_RUN_DIR/kafka.pid"
KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
KAFKA_SECURE="${SAEWATCH_KAFKA_SECURE:-0}"
KAFKA_SASL_SSL_PORT="${SAEWATCH_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SASL_PLAINTEXT_PORT="${SAEWATCH_KAFKA_SASL_PLAINTEXT_PORT:-$((KAFKA_PORT + 3))}"
# The throw-away CA, the broker's keystore and the SCRAM users' passwords (start.sh --secure).
KAFKA_SECRETS_DIR="$KAFKA_RUN_DIR/secrets"

# True when $1 is a live process running kafka.Kafka with this run folder's configuration, so a
# pid reused by an unrelated process is never signalled.
kafka_pid_is_ours() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $KAFKA_CONFIG" || return 1
}

kafka_running_pid() {
    local pid
    [[ -f "$KAFKA_PID_FILE" ]] || return 1
    pid="$(cat "$KAFKA_PID_FILE")"
    kafka_pid_is_ours "$pid" || return 1
    echo "$pid"
}
