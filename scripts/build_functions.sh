#!/usr/bin/env bash
# Builds every function under functions/ for Lambda with `cargo lambda build --release` and checks
# that each one produced target/lambda/<name>/bootstrap for the requested architecture.
#
# Usage: scripts/build_functions.sh [x86_64|arm64]   (default x86_64)
#
# cargo-lambda comes from .venv (local/install.sh) and cross-links with the Zig it installs there,
# so the build needs no network once the crates are in Cargo's cache. arm64 also needs the
# aarch64-unknown-linux-gnu standard library (`rustup target add aarch64-unknown-linux-gnu`).
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

arch=${1:-x86_64}
case "$arch" in
  x86_64) arch_flag=--x86-64 elf_machine=62 ;;
  arm64) arch_flag=--arm64 elf_machine=183 ;;
  *)
    echo "build_functions.sh: unknown architecture '$arch': use x86_64 or arm64" >&2
    exit 2
    ;;
esac

if [ ! -x .venv/bin/cargo-lambda ]; then
  echo "build_functions.sh: .venv/bin/cargo-lambda is missing: run bash local/install.sh first" >&2
  exit 1
fi
export PATH="$root/.venv/bin:$PATH"

# The binary of each function is named after its package directory.
names=()
for manifest in functions/*/Cargo.toml; do
  names+=("$(basename "$(dirname "$manifest")")")
done
if [ ${#names[@]} -eq 0 ]; then
  echo "build_functions.sh: no function packages under functions/" >&2
  exit 1
fi

package_args=()
for name in "${names[@]}"; do
  package_args+=(--package "$name")
done

echo "cargo lambda build --release $arch_flag: ${names[*]}"
start=$(date +%s)
cargo lambda build --release "$arch_flag" "${package_args[@]}"
echo "built ${#names[@]} functions in $(($(date +%s) - start)) s"

# Each bootstrap must exist and be an ELF executable for the requested machine (e_machine is the
# little-endian 16-bit field at byte 18: 62 for x86-64, 183 for AArch64).
lambda_dir="${CARGO_TARGET_DIR:-$root/target}/lambda"
failed=0
for name in "${names[@]}"; do
  binary="$lambda_dir/$name/bootstrap"
  if [ ! -f "$binary" ]; then
    echo "missing: $binary was not built" >&2
    failed=1
    continue
  fi
  machine=$(od -An -tu2 -j18 -N2 "$binary" | tr -d ' ')
  if [ "$machine" != "$elf_machine" ]; then
    echo "wrong architecture: $binary has ELF machine $machine, expected $elf_machine ($arch)" >&2
    failed=1
    continue
  fi
  printf '%-24s %8d KiB  %s\n' "$name" $(( $(stat -c %s "$binary") / 1024 )) "$binary"
done
exit "$failed"
