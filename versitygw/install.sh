#!/bin/bash
# Build versitygw (the Versity S3 Gateway, Apache-2.0) from the Go module proxy once, into a cache
# outside the clone:   versitygw/install.sh        prints the binary's path on its last line
# Cached in $FANSYNC_VERSITYGW_HOME (default ~/.cache/fansync-versitygw)/<version>; a build takes
# about 5 minutes on 2 cores (under 2 of CPU), a second run with the binary there does nothing.
set -euo pipefail

VERSION=v1.8.0
home="${FANSYNC_VERSITYGW_HOME:-$HOME/.cache/fansync-versitygw}"
bin="$home/$VERSION/versitygw"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
go=$(command -v go || true)
[ -n "$go" ] || { [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go; }
if [ -z "$go" ]; then
  echo "versitygw/install.sh: no Go toolchain (go) on PATH: install Go >= 1.24 to build versitygw $VERSION" >&2
  exit 69
fi
mkdir -p "$home/$VERSION"
# GOBIN outside the clone; building into a temp name first so a killed build leaves no binary.
tmp=$(mktemp -d "$home/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-mod=mod "$go" install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
mv "$tmp/versitygw" "$bin"
echo "$bin"
