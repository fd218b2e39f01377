#!/usr/bin/env bash
# Builds the brummer packages: release binaries, man pages and completions, then
# brummer_<version>_<arch>.deb (cargo-deb) and brummer-<version>-1.<arch>.rpm
# (cargo-generate-rpm), both into target/packages/.
#
#   packaging/build.sh            # both packages
#   packaging/build.sh deb        # only the .deb (what the systemd e2e test needs)
#   packaging/build.sh rpm        # only the .rpm
#
#   BRUMMER_VERSION=0.1.0+x packaging/build.sh deb   # binaries and .deb report that version
#
# Needs cargo-deb and cargo-generate-rpm (`cargo install cargo-deb cargo-generate-rpm`);
# installs them when missing. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
what=${1:-all}
case $what in all|deb|rpm) ;; *) echo "usage: $0 [all|deb|rpm]" >&2; exit 2 ;; esac

target_dir=${CARGO_TARGET_DIR:-$root/target}
out=$root/target/packages
assets=$root/target/assets

# need_tool SUBCOMMAND CRATE: the cargo subcommand, and the crate that provides it (the
# crate `deb` on crates.io is another project, with no binary).
need_tool() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "build.sh: installing $2 (for cargo $1)" >&2
        cargo install --locked "$2"
    fi
}
[ "$what" = rpm ] || need_tool deb cargo-deb
[ "$what" = deb ] || need_tool generate-rpm cargo-generate-rpm

echo "build.sh: release binaries" >&2
cargo build --release --locked -p brummerd -p brummerctl
echo "build.sh: man pages and completions -> $assets" >&2
rm -rf "$assets"
cargo run --quiet --locked -p xtask -- assets "$assets"

# Both tools resolve target/release/... against the target directory; give cargo-deb a
# stable SOURCE_DATE_EPOCH so the .deb is reproducible.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$out"
if [ "$what" != rpm ]; then
    echo "build.sh: .deb" >&2
    rm -f "$out"/brummer_*.deb
    # BRUMMER_VERSION (read by the binaries at build time, brummer_proto::VERSION) is the
    # package's version too: packaging/e2e-systemd.sh builds a newer package that way.
    deb_version=()
    [ -z "${BRUMMER_VERSION:-}" ] || deb_version=(--deb-version "$BRUMMER_VERSION")
    cargo deb --no-build --strip --locked -p brummerd --output "$out" "${deb_version[@]}"
fi
if [ "$what" != deb ]; then
    # cargo-generate-rpm copies files as they are: stage stripped binaries and compressed
    # man pages for it (cargo-deb does both itself).
    mkdir -p "$assets/bin" "$assets/man-gz"
    for b in brummerd brummerctl; do
        strip -o "$assets/bin/$b" "$target_dir/release/$b"
    done
    for m in "$assets"/man/*; do
        gzip -9n < "$m" > "$assets/man-gz/$(basename "$m").gz"
    done
    echo "build.sh: .rpm" >&2
    rm -f "$out"/brummer-*.rpm
    cargo generate-rpm -p daemon --target-dir "$target_dir" -o "$out"
fi
ls -l "$out"

# Lint what was built when the linters are installed (apt-get install lintian rpmlint):
# any message fails the build.
lint_failed=0
if [ "$what" != rpm ] && command -v lintian >/dev/null; then
    msgs=$(lintian "$out"/brummer_*.deb 2>&1 | grep -v "running with root privileges" || true)
    if [ -n "$msgs" ]; then echo "$msgs" >&2; lint_failed=1; else echo "build.sh: lintian clean" >&2; fi
fi
if [ "$what" != deb ] && command -v rpmlint >/dev/null; then
    if rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/brummer.rpmlintrc "$out"/brummer-*.rpm > "$out/rpmlint.log" 2>&1 \
        && ! grep -qE ": (W|E): " "$out/rpmlint.log"; then
        echo "build.sh: rpmlint clean ($(tail -1 "$out/rpmlint.log"))" >&2
    else
        cat "$out/rpmlint.log" >&2; lint_failed=1
    fi
fi
exit "$lint_failed"
