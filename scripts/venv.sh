# Sourced by the other scripts: create .venv and install the locked dependencies, once per
# change of requirements.lock or pyproject.toml (a stamp file records what was installed).
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.eligo-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
# Bytecode for app/, as pip compiles an installed package's (the Dockerfile's `pip install .`
# does): with PYTHONDONTWRITEBYTECODE set, as on the development machines, an editable
# install's modules were compiled from source at every start, ~0.07 CPU-s of each `eligo`
# command's imports. Only files changed since their .pyc are compiled again.
.venv/bin/python -m compileall -q app
