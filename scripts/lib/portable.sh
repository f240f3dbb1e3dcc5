#!/bin/sh
# Shell functions the scripts share, in POSIX sh: they run under dash and
# under the bash 3.2 of a stock Mac. Source it: . scripts/lib/portable.sh

# limited SECONDS COMMAND...: runs COMMAND; past SECONDS it is sent TERM, ten
# seconds later KILL, and the status is non-zero (124 as GNU timeout's, or the
# signal's). GNU timeout where there is one (gtimeout: Homebrew's coreutils),
# else a watchdog in the shell (macOS has no timeout).
limited() {
    _limit=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout --kill-after=10 "$_limit" "$@"
        return
    fi
    if command -v gtimeout >/dev/null 2>&1; then
        gtimeout --kill-after=10 "$_limit" "$@"
        return
    fi
    "$@" &
    _pid=$!
    # The watchdog's output goes nowhere: a sleep left behind must not hold
    # the caller's pipes open.
    (
        sleep "$_limit"
        kill -s TERM "$_pid" 2>/dev/null || exit 0
        sleep 10
        kill -s KILL "$_pid" 2>/dev/null
    ) >/dev/null 2>&1 &
    _watchdog=$!
    _rc=0
    wait "$_pid" || _rc=$?
    kill "$_watchdog" 2>/dev/null || true
    return "$_rc"
}

# sha256 < DATA: the hex digest of standard input (sha256sum on Linux,
# shasum on macOS).
sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d' ' -f1
    else
        shasum -a 256 | cut -d' ' -f1
    fi
}

# now: seconds since the epoch (POSIX sh has no $SECONDS).
now() {
    date +%s
}
