#!/bin/bash
# Install LocalStack (S3 only, no Docker) into a venv outside the clone, once:
#   localstack/install.sh        prints the venv's python on its last line
# Cached in $FANSYNC_LOCALSTACK_HOME (default ~/.cache/fansync-localstack); a second run with the
# same pins does nothing. Facts and pitfalls: shared/S3-SERVERS.md, "More servers".
set -euo pipefail

VERSION=2026.3.0
home="${FANSYNC_LOCALSTACK_HOME:-$HOME/.cache/fansync-localstack}"
venv="$home/venv-$VERSION"
stamp="$venv/.fansync-installed"
# Newer releases of these break LocalStack at start (measured on 2026.3.0).
constraints=$'cbor2<6\npyopenssl<24.3\ncryptography<44'

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$VERSION $constraints" ]; then
  echo "$venv/bin/python"
  exit 0
fi

# LocalStack's wheel claims Python >= 3.10 but its code uses 3.13 features.
python=""
for candidate in "${FANSYNC_PYTHON313:-}" python3.13 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.13.0/bin/python3.13")"; do
  [ -n "$candidate" ] || continue
  if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "localstack/install.sh: no Python 3.13 found (tried \$FANSYNC_PYTHON313, python3.13, pyenv's 3.13.0); install one, e.g. 'pyenv install 3.13'" >&2
  exit 69
fi

mkdir -p "$home"
rm -rf "$venv"
"$python" -m venv "$venv"
printf '%s\n' "$constraints" > "$home/constraints.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$home/constraints.txt" \
  "localstack-core[base-runtime]==$VERSION" service-identity >&2
printf '%s' "$VERSION $constraints" > "$stamp"
echo "$venv/bin/python"
