# Sourced by start.sh for `start.sh --secure`: a throw-away CA and broker certificate made with
# the JDK's keytool, SCRAM credentials, the secured listeners' configuration and their readiness
# check. Everything lands in $KAFKA_SECRETS_DIR (mode 700), made once per run folder:
#
#   ca.pem               the CA's certificate (PEM): clients' kafka.ssl_cafile
#   ca.p12               the CA's key and certificate (signs the broker's and client's)
#   broker.p12           the broker's key and certificate chain (SAN: localhost, 127.0.0.1, host)
#   truststore.p12       the CA's certificate, for the broker to verify client certificates
#   keystore.password    the password of the three keystores above
#   saewatch.password    SCRAM-SHA-512 and SCRAM-SHA-256 password of user "saewatch"
#   client.properties    Kafka's Java tools over SASL_SSL (--command-config)
#   client.pem, client.key, client-key.password
#                        a client certificate and its encrypted key (mutual TLS; made only when
#                        openssl is installed, because keytool cannot write a PEM private key)
# shellcheck shell=bash

SCRAM_USER=saewatch
# Certificates outlive any test run and the broker's local use, and expire on their own.
CERT_VALIDITY_DAYS=30

# A random password of hex digits: safe inside --add-scram's [name=...,password=...] syntax and
# in properties files without escaping.
random_password() { od -An -N18 -tx1 /dev/urandom | tr -d ' \n'; }

# keytool with a small, quick JVM; its output goes to secrets.log, shown when it fails.
keytool_q() {
    keytool -J-Xmx64m -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 "$@" \
        >>"$KAFKA_LOG_DIR/secrets.log" 2>&1 && return
    cat "$KAFKA_LOG_DIR/secrets.log" >&2
    rm -rf "$KAFKA_SECRETS_DIR"
    die "keytool $1 failed (output above)"
}

# SAN for the broker's certificate: clients check the host name they connect to.
broker_san() {
    local san="dns:localhost,ip:127.0.0.1"
    if [[ "$KAFKA_HOST" =~ ^[0-9.]+$ ]]; then
        [[ "$KAFKA_HOST" == "127.0.0.1" ]] || san="$san,ip:$KAFKA_HOST"
    elif [[ "$KAFKA_HOST" != "localhost" ]]; then
        san="$san,dns:$KAFKA_HOST"
    fi
    echo "$san"
}

# Sign the key pair $1 of keystore $2 with the CA (extended key usage $3); write the chain back.
sign_with_ca() {
    local alias="$1" store="$2" eku="$3" san="${4:-}" pw
    pw="$(cat "$KAFKA_SECRETS_DIR/keystore.password")"
    keytool_q -certreq -alias "$alias" -keystore "$store" -storepass "$pw" \
        -file "$KAFKA_SECRETS_DIR/$alias.csr"
    keytool_q -gencert -alias ca -keystore "$KAFKA_SECRETS_DIR/ca.p12" -storepass "$pw" \
        -infile "$KAFKA_SECRETS_DIR/$alias.csr" -outfile "$KAFKA_SECRETS_DIR/$alias.pem" -rfc \
        -validity "$CERT_VALIDITY_DAYS" -ext "ku:c=digitalSignature,keyEncipherment" \
        -ext "eku=$eku" ${san:+-ext "san=$san"}
    keytool_q -importcert -noprompt -alias ca -file "$KAFKA_SECRETS_DIR/ca.pem" \
        -keystore "$store" -storepass "$pw"
    keytool_q -importcert -noprompt -alias "$alias" -file "$KAFKA_SECRETS_DIR/$alias.pem" \
        -keystore "$store" -storepass "$pw"
    rm -f "$KAFKA_SECRETS_DIR/$alias.csr"
}

# A client certificate with an encrypted PEM key, for mutual TLS (openssl exports the key).
make_client_cert() {
    local dir="$KAFKA_SECRETS_DIR" pw key_pw
    if ! command -v openssl >/dev/null; then
        log "openssl not found: no client certificate (mutual TLS); SCRAM still works"
        return
    fi
    pw="$(cat "$dir/keystore.password")"
    key_pw="$(random_password)"
    keytool_q -genkeypair -alias client -keyalg EC -groupname secp256r1 \
        -dname "CN=$SCRAM_USER" -validity "$CERT_VALIDITY_DAYS" \
        -keystore "$dir/client.p12" -storetype PKCS12 -storepass "$pw"
    sign_with_ca client "$dir/client.p12" clientAuth
    openssl pkcs12 -in "$dir/client.p12" -passin "pass:$pw" -nocerts \
        -passout "pass:$key_pw" -out "$dir/client.key" 2>"$dir/openssl.log" \
        || { cat "$dir/openssl.log" >&2; die "openssl could not export the client key"; }
    printf '%s\n' "$key_pw" >"$dir/client-key.password"
    rm -f "$dir/client.p12" "$dir/openssl.log"
}

make_secrets() {
    local dir="$KAFKA_SECRETS_DIR" pw old_umask
    [[ -f "$dir/ca.pem" && -f "$dir/broker.p12" && -f "$dir/saewatch.password" ]] && return
    [[ -f "$KAFKA_DATA_DIR/meta.properties" ]] && die "$KAFKA_RUN_DIR holds a broker formatted" \
        "without --secure (its SCRAM users are added at format time); purge it first:" \
        "deploy/kafka/stop.sh --purge"
    command -v keytool >/dev/null || die "keytool (from the JDK) is needed for --secure"
    log "making a throw-away CA and broker certificate in $dir"
    rm -rf "$dir" "$KAFKA_LOG_DIR/secrets.log"
    old_umask="$(umask)"
    umask 077  # keys and passwords readable by this user only
    mkdir -p "$dir"
    random_password >"$dir/keystore.password"
    random_password >"$dir/$SCRAM_USER.password"
    pw="$(cat "$dir/keystore.password")"
    keytool_q -genkeypair -alias ca -keyalg EC -groupname secp256r1 \
        -dname "CN=saewatch local CA" -ext "bc:c" -validity "$CERT_VALIDITY_DAYS" \
        -keystore "$dir/ca.p12" -storetype PKCS12 -storepass "$pw"
    keytool_q -exportcert -rfc -alias ca -keystore "$dir/ca.p12" -storepass "$pw" \
        -file "$dir/ca.pem"
    keytool_q -genkeypair -alias broker -keyalg EC -groupname secp256r1 \
        -dname "CN=localhost" -validity "$CERT_VALIDITY_DAYS" \
        -keystore "$dir/broker.p12" -storetype PKCS12 -storepass "$pw"
    sign_with_ca broker "$dir/broker.p12" serverAuth "$(broker_san)"
    keytool_q -importcert -noprompt -alias ca -file "$dir/ca.pem" \
        -keystore "$dir/truststore.p12" -storetype PKCS12 -storepass "$pw"
    make_client_cert
    write_client_properties
    umask "$old_umask"
    chmod 644 "$dir/ca.pem" "$dir"/*.pem  # certificates are public: any client reads them
}

write_client_properties() {
    local dir="$KAFKA_SECRETS_DIR"
    cat >"$dir/client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$(cat "$dir/saewatch.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
}

write_secure_config() {
    sed -e "s|@HOST@|$KAFKA_HOST|g" -e "s|@PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@SASL_SSL_PORT@|$KAFKA_SASL_SSL_PORT|g" \
        -e "s|@SASL_PLAINTEXT_PORT@|$KAFKA_SASL_PLAINTEXT_PORT|g" \
        -e "s|@SECRETS_DIR@|$KAFKA_SECRETS_DIR|g" \
        -e "s|@KEYSTORE_PASSWORD@|$(cat "$KAFKA_SECRETS_DIR/keystore.password")|g" \
        "$KAFKA_DEPLOY_DIR/server-secure.properties.in" >>"$KAFKA_CONFIG"
    chmod 600 "$KAFKA_CONFIG"  # it holds the keystore password now
}

# StorageTool arguments that add the SCRAM user (both mechanisms) while formatting, into the
# array SCRAM_FORMAT_ARGS (an array: the brackets must not meet the shell's globbing).
scram_format_args() {
    local pw
    pw="$(cat "$KAFKA_SECRETS_DIR/saewatch.password")"
    SCRAM_FORMAT_ARGS=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$pw]"
                       --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$pw]")
}

# A real Java client logs in with SCRAM over TLS, verifying the broker against ca.pem.
secure_listener_answers() {
    port_open "$KAFKA_SASL_SSL_PORT" || return 1
    timeout 30 java -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA_HOST:$KAFKA_SASL_SSL_PORT" \
        --command-config "$KAFKA_SECRETS_DIR/client.properties" --list
}

log_secure_endpoints() {
    log "SASL_SSL at $KAFKA_HOST:$KAFKA_SASL_SSL_PORT, SASL_PLAINTEXT at" \
        "$KAFKA_HOST:$KAFKA_SASL_PLAINTEXT_PORT (SCRAM-SHA-512/256, user $SCRAM_USER)"
    log "CA certificate $KAFKA_SECRETS_DIR/ca.pem, password $KAFKA_SECRETS_DIR/$SCRAM_USER.password"
}

# A broker already running in this run folder must have been started the same way.
check_running_matches() {
    if grep -q '^listeners=.*SASL_SSL' "$KAFKA_CONFIG" 2>/dev/null; then
        [[ "$KAFKA_SECURE" == 1 ]] || log "note: the broker running here also serves SASL (--secure)"
    elif [[ "$KAFKA_SECURE" == 1 ]]; then
        die "the broker running at $KAFKA_BOOTSTRAP was started without --secure;" \
            "stop it (deploy/kafka/stop.sh --purge) and start it again with --secure"
    fi
}
