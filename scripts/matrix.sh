#!/usr/bin/env bash
# Builds torch releases one at a time: tests them (`make matrix`, `make pin-check`), writing
# docs/compatibility.md, or only builds their wheels (`make wheels`).
#
#   bash scripts/matrix.sh [RELEASE ...]   every release of releases.toml, or the ones named
#   bash scripts/matrix.sh --pin-check     wheels built against one patch release, tested beside
#                                          another of the same minor (PIN_CHECKS="built:beside ...")
#   bash scripts/matrix.sh --wheels [RELEASE ...]
#                                          each release's wheel, built only, into
#                                          dist/wheels/torch-<minor>/ beside the sdist
#                                          (`make sdist`), which pip builds from where no wheel
#                                          fits the platform
#
# Each release runs `make TORCH=<release> test` in its own venv (deleted afterwards unless
# KEEP_VENVS=1) and target dir; the counts go to docs/compatibility.jsonl, one JSON line per run,
# and the page is rewritten from it. Logs: $CACHE/logs/matrix-<release>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${CACHE:-$HOME/.cache/jacobian}
RESULTS=docs/compatibility.jsonl
RELEASES="env PYTHONPATH=build_backend python3 -m jacobian_build"
mkdir -p "$CACHE/logs"

# A clean environment for each release's make: nothing inherited from an outer make's release.
release_make() {
    env -u MAKEFLAGS -u MAKELEVEL make --no-print-directory "$@"
}

patch_release() {  # the torch patch release a release argument installs
    $RELEASES patch "$1"
}

# Appends a result line: release, built_against ("" when built beside itself), log, status.
record() {
    local release=$1 built_against=$2 log=$3 status=$4
    python3 - "$release" "$built_against" "$log" "$status" >>"$RESULTS" <<'PY'
import datetime, json, re, sys
release, built_against, log, status = sys.argv[1:]
text = open(log, errors="replace").read()
rust = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text)
summary = re.findall(r"^=+ (.*) in [\d.]+s", text, re.M)
counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary[-1])} if summary else {}
print(json.dumps({
    "release": release,
    "built_against": built_against,
    "rust": f"{rust[-1][0]} passed, {rust[-1][1]} failed" if rust else "not run",
    "passed": counts.get("passed", 0),
    "failed": counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
    "skipped": counts.get("skipped", 0),
    "status": int(status),
    "date": datetime.date.today().isoformat(),
}))
PY
}

drop_venv() {  # the default release's venv stays: every plain `make` uses it
    local default
    default=$(patch_release default)
    if [ "${KEEP_VENVS:-0}" != 1 ] && [ "$1" != "$default" ]; then rm -rf "$CACHE/venv-torch$1"; fi
}

if [ "${1:-}" = --wheels ]; then
    set -e
    shift
    release_make sdist
    for release in ${@:-$($RELEASES list)}; do
        release_make TORCH="$release" wheel
        rm -rf "dist/wheels/torch-$release" && mkdir -p "dist/wheels/torch-$release"
        cp dist/torch"$(patch_release "$release")"/jacobian_reg-*.whl dist/sdist/jacobian_reg-*.tar.gz \
            "dist/wheels/torch-$release/"
        drop_venv "$(patch_release "$release")"
    done
    exit 0
elif [ "${1:-}" = --pin-check ]; then
    for pair in ${PIN_CHECKS:-2.12.0:2.12.1 2.14.0:2.14.1}; do
        built=${pair%%:*} beside=${pair##*:}
        log=$CACHE/logs/pin-$built-beside-$beside.log
        echo "== built against torch $built, tested beside $beside"
        {
            release_make TORCH="$built" wheel &&
            release_make TORCH="$beside" venv &&
            "$CACHE/venv-torch$beside/bin/python" -m pip install --quiet --no-deps \
                --force-reinstall --disable-pip-version-check dist/torch"$built"/jacobian_reg-*.whl &&
            "$CACHE/venv-torch$beside/bin/python" -m pytest -p no:cacheprovider
        } >"$log" 2>&1
        status=$?
        record "$beside" "$built" "$log" "$status"
        tail -n 1 "$log"
        drop_venv "$built"
        drop_venv "$beside"
    done
else
    for release in ${@:-$($RELEASES list)}; do
        log=$CACHE/logs/matrix-$release.log
        echo "== torch $release ($(patch_release "$release")), log $log"
        start=$(date +%s)
        release_make TORCH="$release" test >"$log" 2>&1
        status=$?
        record "$(patch_release "$release")" "" "$log" "$status"
        echo "   exit $status after $(($(date +%s) - start)) s: $(tail -n 1 "$log")"
        drop_venv "$(patch_release "$release")"
    done
fi
PYTHONPATH=build_backend python3 scripts/compatibility.py "$RESULTS"
echo "Wrote docs/compatibility.md"
