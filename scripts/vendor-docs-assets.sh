#!/usr/bin/env bash
# Refresh the API docs' browser assets vendored in app/web/static/docs/: Swagger UI
# (swagger-ui-dist, Apache-2.0) for /docs and ReDoc's standalone bundle (redoc, MIT) for
# /redoc, from the npm registry, unchanged, with their licence files. They are committed so the
# docs work on networks that reach no CDN (hospital networks) and the service needs no npm.
# To upgrade: change a version here and in app/api/docs.py (SWAGGER_UI, REDOC), run this, update
# NOTICE, and commit the new directory in place of the old one.
set -euo pipefail
cd "$(dirname "$0")/.."
swagger_ui=5.35.0  # swagger-ui-dist; FastAPI's own default is the 5.x line
redoc=2.5.4        # redoc; FastAPI's get_redoc_html is written for the 2.x line's <redoc> element
out=app/web/static/docs
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== npm pack swagger-ui-dist@$swagger_ui redoc@$redoc"
(cd "$scratch" && npm pack --silent "swagger-ui-dist@$swagger_ui" "redoc@$redoc" > /dev/null)
tar -xzf "$scratch/swagger-ui-dist-$swagger_ui.tgz" -C "$scratch" && mv "$scratch/package" "$scratch/swagger"
tar -xzf "$scratch/redoc-$redoc.tgz" -C "$scratch" && mv "$scratch/package" "$scratch/redoc"

rm -rf "$out"
mkdir -p "$out/swagger-ui-$swagger_ui" "$out/redoc-$redoc"
cp "$scratch"/swagger/{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css} \
  "$scratch"/swagger/{favicon-32x32.png,LICENSE,NOTICE} "$out/swagger-ui-$swagger_ui/"
cp "$scratch"/redoc/bundles/{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} \
  "$scratch"/redoc/LICENSE "$out/redoc-$redoc/"
du -sh "$out"/*
