#!/usr/bin/env bash
# Start saewatch's local Apache Kafka broker (KRaft, broker+controller in one JVM) in the
# background and wait until a real client can list its topics. Idempotent: if this broker is
# already running it only checks that it answers.
#
# Jars come from Maven Central (pom.xml beside this script) into .cache/kafka/libs, reused when
# present. Ports and folders: see env.sh. Needs Java 17+ and, on first use, Maven.
#
#   --secure   also serve SASL_SSL and SASL_PLAINTEXT with SCRAM-SHA-512/256 (same as
#              SAEWATCH_KAFKA_SECURE=1): a throw-away CA and certificates made with keytool and
#              a SCRAM user "saewatch" added at format time; see secure.sh and README.md.
set -euo pipefail
for arg in "$@"; do
    case "$arg" in
        --secure) export SAEWATCH_KAFKA_SECURE=1 ;;
        *) echo "usage: $0 [--secure]" >&2; exit 2 ;;
    esac
done
# shellcheck source=deploy/kafka/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=deploy/kafka/secure.sh
source "$KAFKA_DEPLOY_DIR/secure.sh"

log() { echo "kafka: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Run Kafka's own TopicCommand: the readiness check is a real client listing topics.
list_topics() {
    timeout 30 java -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA_BOOTSTRAP" --list
}

port_open() { (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null; }

ensure_libs() {
    local stamp="$KAFKA_LIBS/.pom.sha256" want
    want="$(sha256sum "$KAFKA_DEPLOY_DIR/pom.xml" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    # Several brokers (test sessions) may start at once on a fresh clone: one fetches, the
    # others wait for it instead of deleting the folder under it.
    mkdir -p "$KAFKA_CACHE"
    exec 9>"$KAFKA_CACHE/.libs.lock"
    flock 9
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        flock -u 9
        return
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is needed once to fetch the Kafka jars"
    log "fetching the broker's jars from Maven Central into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS"
    mvn -q -B -Dstyle.color=never -f "$KAFKA_DEPLOY_DIR/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$KAFKA_CACHE/mvn.log" 2>&1 \
        || { cat "$KAFKA_CACHE/mvn.log" >&2
             die "mvn could not resolve org.apache.kafka:kafka_2.13 (output above)"; }
    echo "$want" >"$stamp"
    flock -u 9
}

check_java() {
    command -v java >/dev/null || die "Java 17+ is needed (e.g. apt-get install openjdk-17-jre-headless)"
    local major
    major="$(java -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
    [[ "${major:-0}" -ge 17 ]] || die "Java 17+ is needed, found ${major:-unknown}"
}

secure() { [[ "$KAFKA_SECURE" == 1 ]]; }

write_config() {
    mkdir -p "$KAFKA_DATA_DIR" "$KAFKA_LOG_DIR"
    secure && make_secrets
    sed -e "s|@HOST@|$KAFKA_HOST|g" -e "s|@PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$KAFKA_DATA_DIR|g" \
        "$KAFKA_DEPLOY_DIR/server.properties.in" >"$KAFKA_CONFIG"
    if secure; then
        write_secure_config
    fi
}

format_storage() {
    [[ -f "$KAFKA_DATA_DIR/meta.properties" ]] && return
    local cluster_id
    cluster_id="$(java -Xmx64m -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)"
    log "formatting $KAFKA_DATA_DIR (cluster id $cluster_id)"
    SCRAM_FORMAT_ARGS=()
    if secure; then
        scram_format_args
    fi
    java -Xmx128m -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --standalone \
        -t "$cluster_id" -c "$KAFKA_CONFIG" "${SCRAM_FORMAT_ARGS[@]}" \
        >"$KAFKA_LOG_DIR/format.log" 2>&1 \
        || { cat "$KAFKA_LOG_DIR/format.log" >&2; die "formatting the storage failed"; }
}

launch() {
    local heap="${SAEWATCH_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    # shellcheck disable=SC2086  # heap options are deliberately word-split
    setsid nohup java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ParallelGCThreads=1 \
        -XX:ConcGCThreads=1 -XX:CICompilerCount=2 -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
        -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
        </dev/null >"$KAFKA_LOG_DIR/stdout.log" 2>&1 &
    echo $! >"$KAFKA_PID_FILE"
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + ${SAEWATCH_KAFKA_START_TIMEOUT:-120}))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$KAFKA_LOG_DIR/server.log" "$KAFKA_LOG_DIR/stdout.log" >&2 || true
            rm -f "$KAFKA_PID_FILE"
            die "the broker exited during start-up (logs above, in $KAFKA_LOG_DIR)"
        fi
        if port_open "$KAFKA_PORT" && list_topics >"$KAFKA_LOG_DIR/ready.log" 2>&1; then
            if ! secure || secure_listener_answers >"$KAFKA_LOG_DIR/ready-secure.log" 2>&1; then
                return
            fi
        fi
        sleep 1
    done
    die "the broker did not answer within ${SAEWATCH_KAFKA_START_TIMEOUT:-120}s; logs in $KAFKA_LOG_DIR"
}

main() {
    check_java
    ensure_libs
    local pid
    if pid="$(kafka_running_pid)"; then
        check_running_matches
        wait_ready "$pid"
        log "already running at $KAFKA_BOOTSTRAP (pid $pid); logs in $KAFKA_LOG_DIR"
        secure && log_secure_endpoints
        echo "$KAFKA_BOOTSTRAP"
        return
    fi
    rm -f "$KAFKA_PID_FILE"
    local ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
    secure && ports+=("$KAFKA_SASL_SSL_PORT" "$KAFKA_SASL_PLAINTEXT_PORT")
    for port in "${ports[@]}"; do
        port_open "$port" && die "port $port on $KAFKA_HOST is taken by another process;" \
            "set SAEWATCH_KAFKA_PORT / SAEWATCH_KAFKA_CONTROLLER_PORT (and with --secure" \
            "SAEWATCH_KAFKA_SASL_SSL_PORT / SAEWATCH_KAFKA_SASL_PLAINTEXT_PORT), or use that" \
            "broker with SAEWATCH_KAFKA_BOOTSTRAP"
    done
    write_config
    format_storage
    launch
    pid="$(cat "$KAFKA_PID_FILE")"
    log "started pid $pid; waiting for $KAFKA_BOOTSTRAP to list topics"
    wait_ready "$pid"
    log "ready at $KAFKA_BOOTSTRAP (pid $pid)"
    secure && log_secure_endpoints
    log "logs: $KAFKA_LOG_DIR/server.log; stop with deploy/kafka/stop.sh"
    echo "$KAFKA_BOOTSTRAP"
}

main "$@"
