//! Lookups and loading on a 100,000-node tree, each against a plain
//! `HashMap<String, Vec<u8>>` peer measured in the same run (see BENCHMARKS.md).
//!
//! `get` group: 1,000 lookups of existing leaves in a fixed pseudo-random order, per
//! iteration.
//! - `hashmap_get`: the peer, `map.get(path)` and the value.
//! - `tree_get`: `Tree::get(path)` and the value.
//! - `tree_get_checked`: what a server Get costs in the library before any message
//!   encoding: `Uri::parse`, `Tree::get`, the effective ACL granting Get, the value.
//! - `session_get`: `Session::execute` of a Get command (builds the Results item).
//! - `uri_parse`, `path_to_owned`, `acl_check`: the steps of `tree_get_checked` alone
//!   (`acl_check` on nodes already looked up; interleaved, where the nodes cannot be
//!   held across the session's use of the tree, `tree_get_acl` is the lookup and the
//!   ACL check without the URI parse).
//!
//! `load` group: reading the whole data set back.
//! - `hashmap_file`: the peer, `path\tvalue\n` lines read with `std::fs::read` and
//!   split into the map.
//! - `tree_open_log`: `Tree::open` of a store written by commits of 1,000 nodes (a
//!   snapshot plus the log records since the last automatic compaction).
//! - `tree_open_snapshot`: `Tree::open` of the same store after `Tree::compact`.
//! - `decode_ops`, `from_ops_snapshot_order`, `from_ops_put_order`: the parts of
//!   `Tree::open` alone (decoding the stored operations; replaying them into a tree).
//!
//! After each criterion group the same steps run again interleaved, round after
//! round, and the median ratio of each step to the peer in the same round is printed
//! (to stderr): on a shared machine that ratio moves much less than the ratio of two
//! criterion medians measured seconds apart.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use dm_tree::store::{decode_ops, encode_ops};
use dm_tree::{AclCmd, DmTree, Format, Headless, Op, Record, Session, Tree, Uri, UriLimits};
use syncml_core::{Command, Item, ItemCmd, StatusCode};

#[allow(dead_code)]
#[path = "common/shape.rs"]
mod shape;
use shape::{leaves, LEAVES, NODES};

const LOOKUPS: usize = 1_000;
const SERVER: &str = "srv";

/// Puts every leaf (creating the interior nodes), committing every `batch` nodes.
fn fill(tree: &mut Tree, leaves: &[(String, Vec<u8>)], batch: usize) {
    for chunk in leaves.chunks(batch) {
        for (p, v) in chunk {
            tree.put(p, Record::leaf(Format::Chr, v.clone()))
                .expect("put");
        }
        tree.commit().expect("commit");
    }
}

/// splitmix64: a fixed sequence, the same in every run.
fn lookup_order(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..LOOKUPS)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % n as u64) as usize
        })
        .collect()
}

fn gets(c: &mut Criterion) {
    let leaves = leaves();
    let mut dm = DmTree::empty();
    fill(&mut dm.tree, &leaves, LEAVES);
    assert_eq!(dm.tree.len(), NODES);
    let map: HashMap<String, Vec<u8>> = leaves.iter().cloned().collect();
    let paths: Vec<&str> = lookup_order(LEAVES)
        .into_iter()
        .map(|i| leaves[i].0.as_str())
        .collect();
    let limits = dm.uri_limits;
    let cmds: Vec<Command> = paths
        .iter()
        .map(|p| Command::Get(ItemCmd::new(vec![Item::target(*p)])))
        .collect();

    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("hashmap_get", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(map.get(*p).map(Vec::as_slice));
            }
        })
    });
    let tree = &dm.tree;
    g.bench_function("tree_get", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(tree.get(p).and_then(|n| n.value()));
            }
        })
    });
    g.bench_function("tree_get_checked", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(checked_get(tree, p, &limits));
            }
        })
    });
    for p in &paths {
        assert!(checked_get(tree, p, &limits).is_some(), "{p}");
    }

    // The steps of tree_get_checked, each alone.
    g.bench_function("uri_parse", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(Uri::parse(p, &limits).ok());
            }
        })
    });
    g.bench_function("path_to_owned", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(p.to_string());
            }
        })
    });
    let nodes: Vec<_> = paths.iter().map(|p| tree.get(p).expect("leaf")).collect();
    g.bench_function("acl_check", |b| {
        b.iter(|| {
            for n in &nodes {
                black_box(n.effective_acl().grants(AclCmd::Get, SERVER));
            }
        })
    });
    drop(nodes);

    let mut session = Session::new(SERVER);
    for cmd in &cmds {
        let r = session.execute(&mut dm, &mut Headless, cmd);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, StatusCode::Ok);
        assert_eq!(r[0].results.len(), 1);
    }
    g.bench_function("session_get", |b| {
        b.iter(|| {
            for cmd in &cmds {
                black_box(session.execute(&mut dm, &mut Headless, cmd));
            }
        })
    });
    g.finish();

    // The same steps again, interleaved: each round runs one batch of 1,000 lookups
    // of every kind (starting with a different kind each round), each batch once
    // untimed to warm the caches as criterion's loop does and once timed, so that a
    // change of load on the shared machine hits the peer and the tree alike.
    let names = [
        "hashmap_get",
        "tree_get",
        "tree_get_checked",
        "uri_parse",
        "tree_get_acl",
        "session_get",
    ];
    let batch = |step: usize, dm: &mut DmTree, session: &mut Session| match step {
        0 => paths.iter().for_each(|p| {
            black_box(map.get(*p).map(Vec::as_slice));
        }),
        1 => paths.iter().for_each(|p| {
            black_box(dm.tree.get(p).and_then(|n| n.value()));
        }),
        2 => paths.iter().for_each(|p| {
            black_box(checked_get(&dm.tree, p, &limits));
        }),
        3 => paths.iter().for_each(|p| {
            black_box(Uri::parse(p, &limits).ok());
        }),
        4 => paths.iter().for_each(|p| {
            let n = dm.tree.get(p).expect("leaf");
            black_box(n.effective_acl().grants(AclCmd::Get, SERVER));
        }),
        _ => cmds.iter().for_each(|c| {
            black_box(session.execute(dm, &mut Headless, c));
        }),
    };
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..GET_ROUNDS {
        for j in 0..names.len() {
            let step = (round + j) % names.len();
            batch(step, &mut dm, &mut session);
            let start = Instant::now();
            batch(step, &mut dm, &mut session);
            ns[step].push(start.elapsed().as_nanos() as f64 / LOOKUPS as f64);
        }
    }
    report("get, interleaved (ns a lookup)", &names, &ns, GET_ROUNDS);
}

/// Rounds of the interleaved comparisons.
const GET_ROUNDS: usize = 500;
const LOAD_ROUNDS: usize = 9;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints, for each step, the median time and the median, first and third quartile
/// of its ratio to the peer (step 0) in the same round.
fn report(title: &str, names: &[&str], samples: &[Vec<f64>], rounds: usize) {
    eprintln!("{title}: {rounds} rounds");
    eprintln!(
        "  step                 median   ratio to {} (q1 .. q3)",
        names[0]
    );
    for (name, v) in names.iter().zip(samples) {
        let mut ratios: Vec<f64> = v.iter().zip(&samples[0]).map(|(x, p)| x / p).collect();
        let r = median(&mut ratios);
        let (q1, q3) = (ratios[rounds / 4], ratios[rounds * 3 / 4]);
        let m = median(&mut v.clone());
        eprintln!("  {name:<20} {m:>9.2}   {r:.2} ({q1:.2} .. {q3:.2})");
    }
}

/// Uri::parse, Tree::get, the effective ACL, the value.
fn checked_get<'t>(tree: &'t Tree, p: &str, limits: &UriLimits) -> Option<&'t [u8]> {
    let uri = Uri::parse(p, limits).ok()?;
    let n = tree.get(uri.as_str())?;
    if !n.effective_acl().grants(AclCmd::Get, SERVER) {
        return None;
    }
    n.value()
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench directory");
    d
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The peer's loader: one `path\tvalue\n` line per leaf.
fn load_lines(file: &Path) -> HashMap<String, Vec<u8>> {
    let bytes = std::fs::read(file).expect("read");
    let mut map = HashMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line.iter().position(|&b| b == b'\t').expect("tab");
        let path = String::from_utf8(line[..tab].to_vec()).expect("utf-8");
        map.insert(path, line[tab + 1..].to_vec());
    }
    map
}

/// Times `load` only: what it returns is dropped outside the timing (and before the
/// next call, which for a tree releases the store's lock).
fn time_loads<T>(iters: u64, mut load: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let out = black_box(load());
        total += start.elapsed();
        drop(out);
    }
    total
}

/// The operations `fill` journals, in the order it makes them: each leaf's missing
/// ancestors, then the leaf.
fn put_order_ops(leaves: &[(String, Vec<u8>)]) -> Vec<Op> {
    let mut made = HashSet::new();
    let mut ops = Vec::new();
    for (p, v) in leaves {
        let mut missing = Vec::new();
        let mut at = p.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            if parent == "." || !made.insert(parent.to_owned()) {
                break;
            }
            missing.push(parent);
            at = parent;
        }
        for m in missing.into_iter().rev() {
            ops.push(Op::Put {
                path: m.to_owned(),
                rec: Record::interior(),
            });
        }
        ops.push(Op::Put {
            path: p.clone(),
            rec: Record::leaf(Format::Chr, v.clone()),
        });
    }
    ops
}

fn loads(c: &mut Criterion) {
    let leaves = leaves();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dm-tree-bench");

    let lines = fresh_dir(&base, "lines").join("tree.txt");
    let mut text = Vec::new();
    for (p, v) in &leaves {
        text.extend_from_slice(p.as_bytes());
        text.push(b'\t');
        text.extend_from_slice(v);
        text.push(b'\n');
    }
    std::fs::write(&lines, &text).expect("write the peer file");

    let log_dir = fresh_dir(&base, "log");
    let mut t = Tree::open(&log_dir).expect("open");
    fill(&mut t, &leaves, 1_000);
    drop(t);
    let snap_dir = fresh_dir(&base, "snapshot");
    let mut t = Tree::open(&snap_dir).expect("open");
    fill(&mut t, &leaves, 1_000);
    t.compact().expect("compact");
    drop(t);
    for d in [&log_dir, &snap_dir] {
        let t = Tree::open(d).expect("reopen");
        assert_eq!(t.len(), NODES);
        let leaf = &leaves[LEAVES / 2];
        assert_eq!(t.get(&leaf.0).and_then(|n| n.value()), Some(&leaf.1[..]));
    }
    assert_eq!(load_lines(&lines).len(), LEAVES);
    eprintln!(
        "store sizes: peer file {} B; log store: tree.snap {} B + tree.log {} B; \
         compacted: tree.snap {} B + tree.log {} B",
        file_len(&lines),
        file_len(&log_dir.join("tree.snap")),
        file_len(&log_dir.join("tree.log")),
        file_len(&snap_dir.join("tree.snap")),
        file_len(&snap_dir.join("tree.log")),
    );

    // The parts of Tree::open, each alone: decoding the operations, and replaying them
    // in snapshot order (parents first, children by name) and in the order the puts
    // were made (children arriving out of name order, siblings far apart in memory).
    let preorder = Tree::open(&snap_dir).expect("open").snapshot_ops();
    let mut encoded = Vec::new();
    encode_ops(&preorder, &mut encoded);
    let put_order = put_order_ops(&leaves);
    assert_eq!(put_order.len(), preorder.len() - 1);
    assert_eq!(Tree::from_ops(&put_order).expect("replay").len(), NODES);

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("hashmap_file", |b| {
        b.iter_custom(|n| time_loads(n, || load_lines(&lines)))
    });
    g.bench_function("tree_open_log", |b| {
        b.iter_custom(|n| time_loads(n, || Tree::open(&log_dir).expect("open")))
    });
    g.bench_function("tree_open_snapshot", |b| {
        b.iter_custom(|n| time_loads(n, || Tree::open(&snap_dir).expect("open")))
    });
    g.bench_function("decode_ops", |b| {
        b.iter_custom(|n| time_loads(n, || decode_ops(&encoded).expect("decode")))
    });
    g.bench_function("from_ops_snapshot_order", |b| {
        b.iter_custom(|n| time_loads(n, || Tree::from_ops(&preorder).expect("replay")))
    });
    g.bench_function("from_ops_put_order", |b| {
        b.iter_custom(|n| time_loads(n, || Tree::from_ops(&put_order).expect("replay")))
    });
    g.finish();

    // Interleaved, as for the lookups.
    let names = [
        "hashmap_file",
        "tree_open_log",
        "tree_open_snapshot",
        "decode_ops",
        "from_ops_snapshot_order",
        "from_ops_put_order",
    ];
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..LOAD_ROUNDS {
        for j in 0..names.len() {
            let step = (round + j) % names.len();
            let took = match step {
                0 => time_loads(1, || load_lines(&lines)),
                1 => time_loads(1, || Tree::open(&log_dir).expect("open")),
                2 => time_loads(1, || Tree::open(&snap_dir).expect("open")),
                3 => time_loads(1, || decode_ops(&encoded).expect("decode")),
                4 => time_loads(1, || Tree::from_ops(&preorder).expect("replay")),
                _ => time_loads(1, || Tree::from_ops(&put_order).expect("replay")),
            };
            ms[step].push(took.as_secs_f64() * 1e3);
        }
    }
    report("load, interleaved (ms)", &names, &ms, LOAD_ROUNDS);
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, gets, loads);
criterion_main!(benches);
