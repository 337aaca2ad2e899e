# shellcheck shell=bash
# Sourced by tests whose servers talk TLS, after lib.sh: a site CA made with
# dimctl ca, certificates from it, and the imaged.conf lines that use them.

# tls_ca_init: a site CA in $CA, certificates to come in $certs.
tls_ca_init() {
  CA=$TEST_TMP/ca
  certs=$TEST_TMP/certs
  mkdir -p "$certs"
  "$DIMCTL" ca init --dir "$CA" > /dev/null
}
# issue NAME OPTION...: a certificate and key for NAME from the site CA, in $certs.
issue() { "$DIMCTL" ca issue "$@" --dir "$CA" --out "$certs" > /dev/null; }
# add_tls NAME CERT: TLS lines for $TEST_TMP/NAME.conf (CERT empty: none).
add_tls() {
  {
    if [[ -n $2 ]]; then
      echo "tls_cert = $certs/$2.crt"
      echo "tls_key = $certs/$2.key"
    fi
    echo "tls_ca = $CA/ca.crt"
    echo "tls_crl = $CA/ca.crl"
  } >> "$TEST_TMP/$1.conf"
}
# tls_dimctl: dimctl checks servers with the site CA and proves itself with
# a certificate of its own (mutual TLS).
tls_dimctl() {
  issue dimctl --ip 127.0.0.1
  export DIM_TLS_CA=$CA/ca.crt DIM_TLS_CRL=$CA/ca.crl
  export DIM_TLS_CERT=$certs/dimctl.crt DIM_TLS_KEY=$certs/dimctl.key
}
