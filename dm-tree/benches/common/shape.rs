//! The tree shape the benchmark and the memory example share: 100,000 nodes, with
//! leaves `./Vendor/grpG/subS/nodeK` holding 16-byte chr values.

/// Nodes in the tree, root and interior nodes included.
pub const NODES: usize = 100_000;
pub const GROUPS: usize = 20;
pub const SUBS_PER_GROUP: usize = 25;
pub const SUBS: usize = GROUPS * SUBS_PER_GROUP;
/// Root, `./Vendor`, the groups and the subgroups.
pub const INTERIOR: usize = 2 + GROUPS + SUBS;
pub const LEAVES: usize = NODES - INTERIOR;

/// The leaves, spread evenly over the subgroups.
pub fn leaves() -> Vec<(String, Vec<u8>)> {
    (0..LEAVES)
        .map(|k| {
            let s = k % SUBS;
            let g = s / SUBS_PER_GROUP;
            let path = format!("./Vendor/grp{g}/sub{s}/node{k}");
            let value = format!("val-{:012}", (k as u64 * 7_919) % 1_000_000_000_000);
            (path, value.into_bytes())
        })
        .collect()
}
