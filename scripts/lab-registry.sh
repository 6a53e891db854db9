# shellcheck shell=bash
# Sourced by test.sh and bench.sh: remove, on exit, the namespaces this
# run's labs made and could not remove themselves.
# Each lab deletes its namespaces on drop, also when a test panics. A test
# process killed outright cannot, so the harness lists every namespace it
# creates in $LEASH_LAB_REGISTRY and this removes the ones still there:
# only this run's, never another run's that may be going on in parallel.
export LEASH_LAB_REGISTRY
LEASH_LAB_REGISTRY=$(mktemp /tmp/leash-lab-registry.XXXXXX)
cleanup() {
    local ns pid id
    # Gone already (someone cleaned /tmp): nothing of ours to remove, and
    # the run's own status must stand.
    [ -f "$LEASH_LAB_REGISTRY" ] || return 0
    while read -r ns; do
        if [ -z "$ns" ] || [ ! -e "/run/netns/$ns" ]; then continue; fi
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
        id=${ns#lx}; rm -rf "/tmp/leash-lab-${id%%-*}"
        echo "removed stale namespace $ns" >&2
    done < "$LEASH_LAB_REGISTRY"
    rm -f "$LEASH_LAB_REGISTRY"
}
trap cleanup EXIT
