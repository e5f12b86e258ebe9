#!/usr/bin/env bash
# Stop saewatch's local Kafka broker: SIGTERM (a clean, controlled shutdown), wait, then SIGKILL
# by pid if it is still there. Idempotent: nothing running is not an error.
#   --purge   also delete this broker's data and logs (its run folder)
# Which broker: the same SAEWATCH_KAFKA_* variables as start.sh (see env.sh).
set -euo pipefail
# shellcheck source=deploy/kafka/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

log() { echo "kafka: $*" >&2; }

purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        *) log "usage: $0 [--purge]"; exit 2 ;;
    esac
done

if pid="$(kafka_running_pid)"; then
    log "stopping pid $pid ($KAFKA_BOOTSTRAP)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ${SAEWATCH_KAFKA_STOP_TIMEOUT:-30}))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "no clean shutdown within ${SAEWATCH_KAFKA_STOP_TIMEOUT:-30}s; killing pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    log "stopped; logs were in $KAFKA_LOG_DIR"
else
    log "not running at $KAFKA_BOOTSTRAP (run folder $KAFKA_RUN_DIR)"
fi
rm -f "$KAFKA_PID_FILE"

if ((purge)) && [[ -d "$KAFKA_RUN_DIR" ]]; then
    rm -rf "$KAFKA_RUN_DIR"
    log "purged $KAFKA_RUN_DIR"
fi
