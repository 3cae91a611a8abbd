// The co-residency probe of the persistent scans (see "Scans" in common.cl).
// Built with common.cl prepended (recur_grid_barrier).

// Runs `rounds` grid barriers over the launch's groups and checks that each one both waits for
// every group and makes their writes visible: in round r, group g writes r * G + g + 1 to its slot
// of board half r % 2, passes the barrier, and reads the slot of group (g + 1 + r) % G, which must
// hold that group's round-r value; a wrong value counts in mismatches[0]. Two halves, because a
// group may write round r + 1 while a slower one still reads round r; round r + 2 writes a half
// again only after everyone passed the barrier of round r + 1, so after every read of round r.
// A timed-out wait leaves gridSync[2] set (the host reads it).
//   board      int [2 * G]
//   mismatches int [1], zeroed by the host
__kernel void recur_grid_probe(volatile __global int* gridSync, const int spinLimit, const int rounds,
                               __global int* board, volatile __global int* mismatches) {
    __local int gridVerdict;
    const int groups = (int)(get_num_groups(0) * get_num_groups(1) * get_num_groups(2));
    const int group = (int)((get_group_id(2) * get_num_groups(1) + get_group_id(1)) * get_num_groups(0)
                            + get_group_id(0));
    const bool leader = get_local_id(0) == 0 && get_local_id(1) == 0 && get_local_id(2) == 0;
    for (int r = 0; r < rounds; ++r) {
        const int base = (r & 1) * groups;
        if (leader) board[base + group] = r * groups + group + 1;
        if (!recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
        if (leader) {
            const int other = (group + 1 + r) % groups;
            if (board[base + other] != r * groups + other + 1) atomic_inc(mismatches);
        }
    }
}
