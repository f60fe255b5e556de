//! Bytes of heap per node of a 100,000-node tree, against a plain
//! `HashMap<String, Vec<u8>>` holding the same leaves (see BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release -p dm-tree --example memory
//! ```
//!
//! A counting global allocator records the bytes requested (allocator overhead and
//! rounding not included) still allocated after each structure is built; the
//! difference from before divided by the number of nodes (tree) or entries (map) is
//! the figure. Inputs (the list of paths and values) are built before the first
//! measurement and are not counted.

use std::collections::HashMap;

use dm_tree::{Acl, Format, Op, Record, Tree};
use fixtures::heap;

#[global_allocator]
static ALLOC: fixtures::heap::Counting = fixtures::heap::Counting;

#[allow(dead_code)]
#[path = "../benches/common/shape.rs"]
mod shape;
use shape::{leaves, INTERIOR, LEAVES, NODES};

fn fill(tree: &mut Tree, leaves: &[(String, Vec<u8>)]) {
    for (p, v) in leaves {
        tree.put(p, Record::leaf(Format::Chr, v.clone()))
            .expect("put");
    }
    tree.commit().expect("commit");
}

/// Runs `build`, returns what it built, the bytes it left allocated, and the peak
/// over the starting level while it ran.
fn measure<T>(build: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = heap::live();
    heap::reset_peak();
    let out = build();
    let after = heap::live();
    let peak = heap::peak();
    (out, after.saturating_sub(before), peak - before)
}

fn main() {
    let leaves = leaves();
    let paths_and_values: usize = leaves.iter().map(|(p, v)| p.len() + v.len()).sum();

    let (map, map_bytes, map_peak) = measure(|| {
        let mut m: HashMap<String, Vec<u8>> = HashMap::new();
        for (p, v) in &leaves {
            m.insert(p.clone(), v.clone());
        }
        m
    });
    assert_eq!(map.len(), LEAVES);
    drop(map);

    let (tree, built_bytes, built_peak) = measure(|| {
        let mut t = Tree::new();
        fill(&mut t, &leaves);
        t
    });
    assert_eq!(tree.len(), NODES);
    drop(tree);

    let dir = std::env::temp_dir().join(format!("dm-tree-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut t = Tree::open(&dir).expect("open the store");
        fill(&mut t, &leaves);
        t.compact().expect("compact");
    }
    let (tree, open_bytes, open_peak) = measure(|| Tree::open(&dir).expect("reopen"));
    assert_eq!(tree.len(), NODES);
    drop(tree);
    let _ = std::fs::remove_dir_all(&dir);

    let per = |bytes: usize, n: usize| bytes as f64 / n as f64;
    let map_per = per(map_bytes, LEAVES);
    println!(
        "{NODES} nodes ({LEAVES} leaves, {INTERIOR} interior incl. root); \
         paths + values of the leaves: {:.1} B a leaf",
        per(paths_and_values, LEAVES)
    );
    println!();
    println!("| structure | bytes held | per node | vs HashMap | peak while building, per node |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, bytes: usize, peak: usize, n: usize| {
        println!(
            "| {name} | {bytes} | {:.0} | {:.2}x | {:.0} |",
            per(bytes, n),
            per(bytes, n) / map_per,
            per(peak, n)
        );
    };
    row(
        "HashMap<String, Vec<u8>> (per entry)",
        map_bytes,
        map_peak,
        LEAVES,
    );
    row(
        "Tree: Tree::new + put + commit",
        built_bytes,
        built_peak,
        NODES,
    );
    row(
        "Tree: Tree::open of the compacted store",
        open_bytes,
        open_peak,
        NODES,
    );
    println!();
    println!(
        "inline sizes: Record {} B, Acl {} B, Op {} B, (String, Vec<u8>) {} B",
        std::mem::size_of::<Record>(),
        std::mem::size_of::<Acl>(),
        std::mem::size_of::<Op>(),
        std::mem::size_of::<(String, Vec<u8>)>(),
    );
}
