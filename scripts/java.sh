#!/usr/bin/env bash
# What the Spark tests need besides the venv (PySpark is in requirements.lock): a Java 17+
# runtime. Installs Debian's headless OpenJDK with apt-get when `java` is missing or older.
# Sourced by scripts/test.sh (so by .ci/run); `bash scripts/java.sh` works too.
eligo_java_setup() {
  local version sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  version=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [ -z "$version" ] || [ "$version" -lt 17 ]; then
    echo "== installing openjdk-17-jre-headless (Debian) for Spark"
    $sudo apt-get update -q || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends openjdk-17-jre-headless || return 1
  fi
}
if ! eligo_java_setup; then
  unset -f eligo_java_setup
  echo "scripts/java.sh: installing Java for Spark failed" >&2
  return 1 2> /dev/null || exit 1
fi
unset -f eligo_java_setup
