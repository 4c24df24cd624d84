#!/usr/bin/env bash
# What the browser tests (tests/e2e/browser) need besides the venv: Debian's Chromium at
# /usr/bin/chromium (Playwright drives it through executable_path; its own browser downloads are
# not used) and the npm packages injected into pages (axe-core), installed with `npm ci` from
# tests/e2e/browser/package-lock.json. Idempotent and silent when all is in place: a stamp in
# node_modules records which lock file was installed. Sourced by .ci/run (and scripts/test.sh);
# `bash scripts/browser.sh` works too.
eligo_browser_setup() {
  local root dir sudo="" apt_packages=() want stamp
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return 1
  dir="$root/tests/e2e/browser"
  [ "$(id -u)" -eq 0 ] || sudo=sudo

  [ -x /usr/bin/chromium ] || apt_packages+=(chromium fonts-dejavu-core)
  command -v npm > /dev/null || apt_packages+=(nodejs npm)
  if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "== installing ${apt_packages[*]} (Debian)"
    $sudo apt-get update -q || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${apt_packages[@]}" || return 1
  fi

  stamp="$dir/node_modules/.eligo-package-lock.sha256"
  want=$(sha256sum < "$dir/package-lock.json" | cut -d' ' -f1) || return 1
  if [ ! -f "$dir/node_modules/axe-core/axe.min.js" ] || [ ! -f "$stamp" ] \
    || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== npm ci (tests/e2e/browser)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" > "$stamp"
  fi
}
if ! eligo_browser_setup; then
  unset -f eligo_browser_setup
  echo "scripts/browser.sh: setting up the browser tests failed" >&2
  return 1 2> /dev/null || exit 1
fi
unset -f eligo_browser_setup
