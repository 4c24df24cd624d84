#!/usr/bin/env bash
# The database tests run on this machine's PostgreSQL (127.0.0.1:5432, trust auth, or
# ELIGO_TEST_POSTGRES_URL): start the local cluster if it is down and wait until it accepts
# connections. Sourced by scripts/test.sh.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "== starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
