#!/usr/bin/env bash
# Checks what `cargo package` would put in each crate's .crate file (issue 29).
#
# For every crate under crates/, in dependency order, `cargo package --list`
# (no build) gives the packaged files; the check fails if one lies under
# tests/data or a results folder, or is larger than 1 MB. Then all crates are
# packaged together without a build, and the leaf crate, strata-tensor, is
# packaged and its package built by cargo's verify step (the others depend on
# strata crates that are not on crates.io, so they cannot be verified alone).
#
# Usage: bash scripts/package-check.sh   (from anywhere in the workspace)
set -euo pipefail

cd "$(dirname "$0")/.."

crates=(strata-tensor strata-kernels strata-autograd strata-data strata-optim
        strata-nn strata-train strata-dist strata-cli)
max_bytes=$((1024 * 1024))
failed=0

# bytes: the files found in the crate folder (cargo's generated ones not counted).
printf '%-16s %6s %10s\n' crate files bytes
for crate in "${crates[@]}"; do
    dir="crates/$crate"
    # --allow-dirty: list the files as they are now, committed or not.
    files=$(cargo package --list -p "$crate" --allow-dirty --quiet 2>/dev/null) || {
        echo "$crate: cargo package --list failed:" >&2
        cargo package --list -p "$crate" --allow-dirty >&2 || true
        failed=1
        continue
    }
    count=0
    total=0
    while IFS= read -r file; do
        [ -n "$file" ] || continue
        count=$((count + 1))
        case "/$file" in
            */tests/data/* | */results/*)
                echo "$crate: $file lies under tests/data or results" >&2
                failed=1
                ;;
        esac
        # Files cargo generates (Cargo.toml.orig, Cargo.lock, .cargo_vcs_info.json)
        # have no copy in the crate folder: small by construction.
        if [ -f "$dir/$file" ]; then
            size=$(stat -c %s "$dir/$file")
            total=$((total + size))
            if [ "$size" -gt "$max_bytes" ]; then
                echo "$crate: $file is $size bytes (over 1 MB)" >&2
                failed=1
            fi
        fi
    done <<< "$files"
    printf '%-16s %6d %10d\n' "$crate" "$count" "$total"
done

if [ "$failed" -ne 0 ]; then
    echo "package-check: FAILED (see above)" >&2
    exit 1
fi

# All crates packaged together, unbuilt: cargo resolves each one's strata
# dependencies against the others (a local registry), so manifest problems
# show here that --list does not check.
echo
args=()
for crate in "${crates[@]}"; do args+=(-p "$crate"); done
echo "cargo package --no-verify --allow-dirty ${args[*]}"
cargo package --no-verify --allow-dirty "${args[@]}" 2>&1 | grep -v '^warning: ignoring'
for crate in "${crates[@]}"; do
    ls -l "target/package/$crate-"*.crate | awk '{ print $5, $NF }'
done

echo
echo "cargo package -p strata-tensor --allow-dirty (packages and builds the .crate)"
cargo package -p strata-tensor --allow-dirty
ls -l target/package/strata-tensor-*.crate
echo "package-check: OK"
