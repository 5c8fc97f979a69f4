//! Unit and property tests of the planner's guarantees (see the module documentation).
//!
//! Clusters are generated from a seed by a small deterministic generator, so one proptest
//! value describes a whole cluster (brokers with non-contiguous ids, racks or not, topics with
//! random partition counts and RFs, a balanced round-robin or a random and skewed assignment).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// splitmix64: tiny and good enough to shape test clusters.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn pick(&mut self, from: &[i32], k: usize) -> Vec<i32> {
        let mut v = from.to_vec();
        for i in 0..k {
            let j = i + self.below(v.len() - i);
            v.swap(i, j);
        }
        v.truncate(k);
        v
    }
}

#[derive(Debug, Clone)]
struct Cluster {
    brokers: Vec<i32>,
    racks: BTreeMap<i32, String>,
    current: Vec<PartitionAssignment>,
    sizes: BTreeMap<(String, i32), u64>,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    brokers: usize,
    topics: usize,
    max_partitions: usize,
    racks: usize,
    balanced: bool,
    seed: u64,
}

fn cluster(s: Shape) -> Cluster {
    let mut rng = Rng(s.seed);
    // Non-contiguous ids exercise the id <-> index mapping.
    let mut brokers: Vec<i32> = (0..(2 * s.brokers) as i32).collect();
    brokers = rng.pick(&brokers, s.brokers);
    brokers.sort_unstable();
    let mut racks = BTreeMap::new();
    if s.racks > 0 {
        for &b in &brokers {
            racks.insert(b, format!("r{}", rng.below(s.racks)));
        }
    }
    // Rack-interleaved order (like Kafka's placer), so round-robin spreads over racks.
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for &b in &brokers {
        by_rack
            .entry(racks.get(&b).cloned().unwrap_or_default())
            .or_default()
            .push(b);
    }
    let mut ring = Vec::new();
    for i in 0..brokers.len() {
        for list in by_rack.values() {
            if let Some(&b) = list.get(i) {
                ring.push(b);
            }
        }
    }
    let mut current = Vec::new();
    let mut sizes = BTreeMap::new();
    for t in 0..s.topics {
        let topic = format!("topic-{t}");
        let partitions = rng.range(1, s.max_partitions);
        let rf = rng.range(1, s.brokers.min(3));
        let start = rng.below(s.brokers);
        let skew = rng.below(3) == 0;
        for p in 0..partitions {
            let replicas = if s.balanced {
                (0..rf)
                    .map(|j| ring[(start + p + j) % ring.len()])
                    .collect()
            } else if skew {
                // Crowd the low ids: an unbalanced start.
                let hot: Vec<i32> = brokers[..rf.max(brokers.len() / 2)].to_vec();
                rng.pick(&hot, rf)
            } else {
                rng.pick(&brokers, rf)
            };
            sizes.insert((topic.clone(), p as i32), rng.range(1, 1000) as u64);
            current.push(PartitionAssignment {
                topic: topic.clone(),
                partition: p as i32,
                replicas,
            });
        }
    }
    // Request order should not matter: shuffle it.
    for i in (1..current.len()).rev() {
        let j = rng.below(i + 1);
        current.swap(i, j);
    }
    Cluster {
        brokers,
        racks,
        current,
        sizes,
    }
}

impl Cluster {
    /// Brokers holding at least one replica (a target broker holding none counts as arriving).
    fn holding(&self) -> Vec<i32> {
        let held: BTreeSet<i32> = self
            .current
            .iter()
            .flat_map(|p| p.replicas.iter().copied())
            .collect();
        held.into_iter().collect()
    }
}

fn max_rf(c: &Cluster) -> usize {
    c.current
        .iter()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(1)
}

fn request(c: &Cluster, target: &[i32]) -> PlanRequest {
    let mut racks = c.racks.clone();
    // Brokers new to the cluster get racks too, when racks are used.
    let rack_names: Vec<String> = c
        .racks
        .values()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, b) in target.iter().enumerate() {
        if !rack_names.is_empty() && !racks.contains_key(b) {
            racks.insert(*b, rack_names[i % rack_names.len()].clone());
        }
    }
    PlanRequest {
        current: c.current.clone(),
        brokers: target
            .iter()
            .map(|&id| Broker {
                id,
                rack: racks.get(&id).cloned(),
            })
            .collect(),
        leaving_racks: racks
            .iter()
            .filter(|(b, _)| !target.contains(b))
            .map(|(b, r)| (*b, r.clone()))
            .collect(),
        sizes: c.sizes.clone(),
        ..Default::default()
    }
}

fn decommission(c: &Cluster, rng: &mut Rng) -> Option<PlanRequest> {
    let holding = c.holding();
    let room = holding.len().checked_sub(max_rf(c))?;
    if room == 0 {
        return None;
    }
    let k = rng.range(1, room.min(4));
    let stay = rng.pick(&holding, holding.len() - k);
    Some(request(c, &stay))
}

fn scale_up(c: &Cluster, rng: &mut Rng) -> PlanRequest {
    let k = rng.range(1, 5);
    let top = *c.brokers.iter().max().unwrap();
    let mut target = c.brokers.clone();
    target.extend((1..=k as i32).map(|i| top + 2 * i));
    request(c, &target)
}

/// Rack lookup over target and leaving brokers.
fn racks_of(req: &PlanRequest) -> BTreeMap<i32, String> {
    let mut r = req.leaving_racks.clone();
    for b in &req.brokers {
        if let Some(rack) = &b.rack {
            r.insert(b.id, rack.clone());
        }
    }
    r
}

fn diversity(replicas: &[i32], racks: &BTreeMap<i32, String>) -> usize {
    replicas
        .iter()
        .filter_map(|b| racks.get(b))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Every partition, in request order, with distinct replicas from the target set, at its RF;
/// rack diversity never below `min(before, RF, racks)`.
fn check_valid(req: &PlanRequest, plan: &Plan) {
    let target_ids: BTreeSet<i32> = req.brokers.iter().map(|b| b.id).collect();
    let racks = racks_of(req);
    let target_racks = req
        .brokers
        .iter()
        .filter_map(|b| b.rack.clone())
        .collect::<BTreeSet<_>>()
        .len();
    assert_eq!(plan.target.len(), req.current.len());
    for (c, t) in req.current.iter().zip(&plan.target) {
        assert_eq!((&c.topic, c.partition), (&t.topic, t.partition));
        let rf = req
            .replication_factors
            .get(&c.topic)
            .copied()
            .unwrap_or(c.replicas.len());
        assert_eq!(t.replicas.len(), rf, "{t:?}");
        let set: BTreeSet<i32> = t.replicas.iter().copied().collect();
        assert_eq!(set.len(), rf, "a broker twice in {t:?}");
        assert!(
            set.is_subset(&target_ids),
            "{t:?} uses a broker outside the target set"
        );
        let before = diversity(&c.replicas, &racks);
        let after = diversity(&t.replicas, &racks);
        assert!(
            after >= before.min(rf).min(target_racks),
            "{c:?} -> {t:?} lost rack diversity ({before} -> {after})"
        );
    }
}

/// Replica counts over the target brokers: (overall, per topic).
fn counts(
    target: &[PartitionAssignment],
    brokers: &[i32],
) -> (BTreeMap<i32, i64>, BTreeMap<(String, i32), i64>) {
    let mut total: BTreeMap<i32, i64> = brokers.iter().map(|&b| (b, 0)).collect();
    let mut topic = BTreeMap::new();
    let topics: BTreeSet<&String> = target.iter().map(|p| &p.topic).collect();
    for t in topics {
        for &b in brokers {
            topic.insert((t.clone(), b), 0);
        }
    }
    for p in target {
        for &b in &p.replicas {
            *total.get_mut(&b).unwrap() += 1;
            *topic.get_mut(&(p.topic.clone(), b)).unwrap() += 1;
        }
    }
    (total, topic)
}

fn ids(req: &PlanRequest) -> Vec<i32> {
    req.brokers.iter().map(|b| b.id).collect()
}

/// The brief's simple lower bounds: minimum moves to bring counts within 1, overall and summed
/// per topic, giving the `ceil` targets to the brokers that hold most. Leaving brokers' and
/// RF-added replicas always move.
fn simple_lower_bounds(req: &PlanRequest) -> (u64, u64) {
    let target: BTreeSet<i32> = ids(req).into_iter().collect();
    let n = target.len();
    let bound = |counts: Vec<i64>, homeless: i64, total: i64| -> u64 {
        let (q, r) = (total / n as i64, (total % n as i64) as usize);
        let mut c = counts;
        c.sort_unstable_by(|a, b| b.cmp(a));
        let excess: i64 = c
            .iter()
            .enumerate()
            .map(|(i, &x)| (x - q - (i < r) as i64).max(0))
            .sum();
        (excess + homeless) as u64
    };
    let mut per_topic: BTreeMap<&str, (BTreeMap<i32, i64>, i64, i64)> = BTreeMap::new();
    for p in &req.current {
        let rf = req
            .replication_factors
            .get(&p.topic)
            .copied()
            .unwrap_or(p.replicas.len());
        let e = per_topic.entry(&p.topic).or_default();
        e.2 += rf as i64;
        let staying: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|b| target.contains(b))
            .collect();
        // With an RF decrease the dropped replicas do not move; count the most loaded staying.
        let kept = staying.len().min(rf);
        e.1 += (rf - kept) as i64;
        for &b in staying.iter().take(kept) {
            *e.0.entry(b).or_default() += 1;
        }
    }
    let (mut overall_counts, mut overall_homeless, mut overall_total) = (BTreeMap::new(), 0, 0);
    let mut sum_topics = 0;
    for (counts, homeless, total) in per_topic.values() {
        let list: Vec<i64> = target
            .iter()
            .map(|b| counts.get(b).copied().unwrap_or(0))
            .collect();
        sum_topics += bound(list, *homeless, *total);
        for (b, c) in counts {
            *overall_counts.entry(*b).or_insert(0) += c;
        }
        overall_homeless += homeless;
        overall_total += total;
    }
    let list: Vec<i64> = target
        .iter()
        .map(|b| overall_counts.get(b).copied().unwrap_or(0))
        .collect();
    (bound(list, overall_homeless, overall_total), sum_topics)
}

fn uniform_rf(target: &[PartitionAssignment]) -> bool {
    target
        .windows(2)
        .all(|w| w[0].replicas.len() == w[1].replicas.len())
}

/// When every partition has the same RF and replicas are balanced, leaders must be too.
fn check_leaders(req: &PlanRequest, plan: &Plan) {
    let m = &plan.summary.metrics;
    if uniform_rf(&plan.target) && m.replica_spread <= 1 && m.topic_replica_spread <= 1 {
        assert!(
            m.leader_spread <= 1 && m.topic_leader_spread <= 1,
            "leaders unbalanced although replicas are balanced: {m:?}\n{req:?}"
        );
    }
}

/// Placement-only guarantee: no moved replica could be re-placed to make its topic's counts
/// (or, at equal topic balance, the cluster counts) strictly more balanced.
fn check_water_filled(req: &PlanRequest, plan: &Plan) {
    let brokers = ids(req);
    let racks = racks_of(req);
    let target_racks = req
        .brokers
        .iter()
        .filter_map(|b| b.rack.clone())
        .collect::<BTreeSet<_>>()
        .len();
    let (total, topic) = counts(&plan.target, &brokers);
    for (c, t) in req.current.iter().zip(&plan.target) {
        let goal = t.replicas.len().min(target_racks);
        let div = diversity(&t.replicas, &racks);
        for &a in t.replicas.iter().filter(|b| !c.replicas.contains(b)) {
            for &b in brokers.iter().filter(|b| !t.replicas.contains(b)) {
                let mut moved = t.replicas.clone();
                *moved.iter_mut().find(|x| **x == a).unwrap() = b;
                if diversity(&moved, &racks).min(goal) < div.min(goal) {
                    continue;
                }
                let (ta, tb) = (topic[&(t.topic.clone(), a)], topic[&(t.topic.clone(), b)]);
                let (ca, cb) = (total[&a], total[&b]);
                assert!(
                    !(ta >= tb + 2 || (ta == tb + 1 && ca >= cb + 2)),
                    "moved replica of {t:?} on {a} ({ta}/{ca}) would be better on {b} ({tb}/{cb})"
                );
            }
        }
    }
}

/// Case counts stay modest for `cargo test` in debug; `PROPTEST_CASES=n` scales them for a
/// soak run (the given count applies to the small-cluster tests, an eighth to the big ones).
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if default < 50 => (n / 8).max(1),
        Some(n) => n,
        None => default,
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1usize..30,
        1usize..6,
        0usize..4,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(brokers, topics, racks, balanced, seed)| Shape {
            brokers,
            topics,
            max_partitions: 12,
            racks,
            balanced,
            seed,
        })
}

fn plain_shape() -> impl Strategy<Value = Shape> {
    shape().prop_map(|s| Shape { racks: 0, ..s })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    /// Decommission moves exactly the leaving brokers' replicas: the exact lower bound, in
    /// replicas and in bytes; they are water-filled; the plan is valid and deterministic.
    #[test]
    fn decommission_moves_only_leaving_replicas(s in shape()) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 1);
        let Some(req) = decommission(&c, &mut rng) else { return Ok(()) };
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let target: BTreeSet<i32> = ids(&req).into_iter().collect();
        let mut leaving_replicas = 0u64;
        let mut leaving_bytes = 0u64;
        for (cur, t) in req.current.iter().zip(&plan.target) {
            let staying: Vec<i32> = cur.replicas.iter().copied().filter(|b| target.contains(b)).collect();
            for b in &staying {
                prop_assert!(t.replicas.contains(b), "{cur:?} -> {t:?} moved a staying replica");
            }
            let gone = (cur.replicas.len() - staying.len()) as u64;
            leaving_replicas += gone;
            leaving_bytes += gone * req.sizes[&(cur.topic.clone(), cur.partition)];
        }
        let sum = &plan.summary;
        prop_assert_eq!(sum.mode, Mode::PlaceOnly);
        prop_assert_eq!(sum.metrics.replicas_moved, leaving_replicas);
        prop_assert_eq!(sum.lower_bound, leaving_replicas);
        prop_assert_eq!(sum.metrics.bytes_moved, leaving_bytes);
        prop_assert_eq!(sum.lower_bound_bytes, Some(leaving_bytes));
        check_water_filled(&req, &plan);
        check_leaders(&req, &plan);

        let mut shuffled = req.clone();
        shuffled.brokers.reverse();
        prop_assert_eq!(super::plan(&shuffled).unwrap(), plan);
    }

    /// Scale-up without racks: balanced per topic and overall, with the fewest moves possible
    /// (exactly the lower bound, which is at least the simple overall and per-topic bounds).
    #[test]
    fn scale_up_is_balanced_at_the_lower_bound(s in plain_shape()) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 2);
        let req = scale_up(&c, &mut rng);
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let sum = &plan.summary;
        prop_assert_eq!(sum.mode, Mode::Rebalance);
        prop_assert!(sum.metrics.replica_spread <= 1, "{:?}", sum);
        prop_assert!(sum.metrics.topic_replica_spread <= 1, "{:?}", sum);
        let (overall, per_topic) = simple_lower_bounds(&req);
        prop_assert!(sum.lower_bound >= overall.max(per_topic), "{:?} vs {} {}", sum, overall, per_topic);
        prop_assert!(sum.metrics.replicas_moved as f64 <= 1.05 * sum.lower_bound as f64, "{:?}", sum);
        prop_assert!(sum.metrics.replicas_moved >= sum.lower_bound, "{:?}", sum);
        // From a balanced start the new brokers must end with floor(R_t / n) of each topic.
        if s.balanced {
            let n = req.brokers.len();
            let mut per_topic_r: BTreeMap<&str, usize> = BTreeMap::new();
            for p in &req.current {
                *per_topic_r.entry(&p.topic).or_default() += p.replicas.len();
            }
            let added = sum.arriving.len();
            let floor_bound: usize = per_topic_r.values().map(|r| added * (r / n)).sum();
            prop_assert!(sum.lower_bound as usize >= floor_bound);
        }
        check_leaders(&req, &plan);
        prop_assert_eq!(super::plan(&req).unwrap(), plan);
    }

    /// Brokers leave and arrive at once, and RFs change: still balanced without racks.
    #[test]
    fn mixed_changes_are_balanced(s in plain_shape(), rf_change in any::<bool>()) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 3);
        let Some(mut req) = decommission(&c, &mut rng) else { return Ok(()) };
        let top = *c.brokers.iter().max().unwrap();
        req.brokers.extend((1..=rng.range(1, 3) as i32).map(|i| Broker::new(top + i)));
        if rf_change {
            let topics: BTreeSet<String> = req.current.iter().map(|p| p.topic.clone()).collect();
            for t in topics {
                if rng.below(2) == 0 {
                    req.replication_factors.insert(t, rng.range(1, req.brokers.len().min(4)));
                }
            }
        }
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let sum = &plan.summary;
        prop_assert!(sum.metrics.replica_spread <= 1, "{:?}", sum);
        prop_assert!(sum.metrics.topic_replica_spread <= 1, "{:?}", sum);
        // Which replicas an RF decrease drops is the planner's choice, so the simple bounds
        // hold only without decreases.
        let decrease = req.current.iter().any(|p| {
            req.replication_factors.get(&p.topic).is_some_and(|&rf| rf < p.replicas.len())
        });
        if !decrease {
            let (overall, per_topic) = simple_lower_bounds(&req);
            prop_assert!(sum.lower_bound >= overall.max(per_topic), "{:?}", sum);
            prop_assert!(sum.metrics.replicas_moved >= sum.lower_bound);
        }
        check_leaders(&req, &plan);
    }

    /// Racks: every plan keeps rack diversity (checked in `check_valid`) whatever the change.
    #[test]
    fn racks_keep_diversity(s in shape().prop_map(|s| Shape { racks: 1 + s.racks, ..s }), kind in 0u8..3) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 4);
        let req = match kind {
            0 => match decommission(&c, &mut rng) { Some(r) => r, None => return Ok(()) },
            1 => scale_up(&c, &mut rng),
            _ => {
                let mut r = request(&c, &c.brokers);
                r.rebalance = true;
                r
            }
        };
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
    }

    /// RF changes alone: increases add replicas (nothing else moves), decreases drop replicas
    /// (nothing moves) and keep the preferred leader's replica.
    #[test]
    fn replication_factor_changes(s in shape()) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 5);
        let mut req = request(&c, &c.holding());
        let topics: BTreeSet<String> = c.current.iter().map(|p| p.topic.clone()).collect();
        for t in &topics {
            req.replication_factors.insert(t.clone(), rng.range(1, req.brokers.len().min(4)));
        }
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let mut must_move = 0;
        for (cur, t) in req.current.iter().zip(&plan.target) {
            if t.replicas.len() >= cur.replicas.len() {
                for b in &cur.replicas {
                    prop_assert!(t.replicas.contains(b), "{cur:?} -> {t:?}");
                }
                must_move += t.replicas.len() - cur.replicas.len();
            } else {
                for b in &t.replicas {
                    prop_assert!(cur.replicas.contains(b), "{cur:?} -> {t:?}");
                }
                prop_assert!(t.replicas.contains(&cur.replicas[0]), "{cur:?} -> {t:?} dropped the leader");
            }
        }
        prop_assert_eq!(plan.summary.metrics.replicas_moved, must_move as u64);
        prop_assert_eq!(plan.summary.lower_bound, must_move as u64);
        check_water_filled(&req, &plan);
    }

    /// Rebalancing a cluster in place (no broker change) reaches balance at the lower bound.
    #[test]
    fn rebalance_in_place(s in plain_shape()) {
        let c = cluster(s);
        let mut req = request(&c, &c.brokers);
        req.rebalance = true;
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let sum = &plan.summary;
        prop_assert!(sum.metrics.replica_spread <= 1 && sum.metrics.topic_replica_spread <= 1, "{:?}", sum);
        prop_assert_eq!(sum.metrics.replicas_moved, sum.lower_bound);
        let (overall, per_topic) = simple_lower_bounds(&req);
        prop_assert!(sum.lower_bound >= overall.max(per_topic));
        check_leaders(&req, &plan);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(12), ..ProptestConfig::default() })]

    /// Bigger clusters, fewer cases.
    #[test]
    fn bigger_clusters(seed in any::<u64>(), balanced in any::<bool>()) {
        let s = Shape { brokers: 30, topics: 20, max_partitions: 60, racks: 0, balanced, seed };
        let c = cluster(s);
        let mut rng = Rng(seed);
        let up = scale_up(&c, &mut rng);
        let plan_up = plan(&up).unwrap();
        check_valid(&up, &plan_up);
        prop_assert!(plan_up.summary.metrics.replica_spread <= 1);
        prop_assert_eq!(plan_up.summary.metrics.replicas_moved, plan_up.summary.lower_bound);
        check_leaders(&up, &plan_up);
        if let Some(down) = decommission(&c, &mut rng) {
            let plan_down = plan(&down).unwrap();
            check_valid(&down, &plan_down);
            prop_assert_eq!(plan_down.summary.metrics.replicas_moved, plan_down.summary.lower_bound);
            check_water_filled(&down, &plan_down);
            check_leaders(&down, &plan_down);
        }
    }

    /// On tiny clusters, the rebalance lower bound equals a brute-force minimum over every
    /// choice of which brokers get each topic's `+1`.
    #[test]
    fn lower_bound_is_exact_on_tiny_clusters(seed in any::<u64>(), n in 2usize..5, topics in 1usize..4) {
        let s = Shape { brokers: n, topics, max_partitions: 5, racks: 0, balanced: false, seed };
        let c = cluster(s);
        let mut req = request(&c, &c.brokers);
        req.rebalance = true;
        let plan = plan(&req).unwrap();
        prop_assert_eq!(plan.summary.lower_bound, brute_force_bound(&req));
        prop_assert_eq!(plan.summary.metrics.replicas_moved, plan.summary.lower_bound);
    }
}

/// Minimum over all per-topic `+1` choices with balanced totals of
/// `sum_t sum_b max(0, c_t[b] - target_t[b])` (no leaving brokers, no RF change).
fn brute_force_bound(req: &PlanRequest) -> u64 {
    let brokers = ids(req);
    let n = brokers.len();
    let (_, counts) = counts(&req.current, &brokers);
    let topics: Vec<String> = req
        .current
        .iter()
        .map(|p| p.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let r: Vec<usize> = topics
        .iter()
        .map(|t| {
            req.current
                .iter()
                .filter(|p| &p.topic == t)
                .map(|p| p.replicas.len())
                .sum()
        })
        .collect();
    let e_total: usize = r.iter().map(|r| r % n).sum();
    // Every choice of brokers for each topic's +1s (a bit mask), with what it costs.
    let options: Vec<Vec<(u32, u64)>> = topics
        .iter()
        .zip(&r)
        .map(|(t, &r)| {
            let (q, e) = (r / n, r % n);
            (0u32..1 << n)
                .filter(|m| m.count_ones() as usize == e)
                .map(|m| {
                    let cost = brokers
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let target = (q + ((m >> i) & 1) as usize) as i64;
                            (counts[&(t.clone(), *b)] - target).max(0) as u64
                        })
                        .sum();
                    (m, cost)
                })
                .collect()
        })
        .collect();
    fn go(
        options: &[Vec<(u32, u64)>],
        extras: &mut [usize],
        cost: u64,
        fl_rem: (usize, usize),
        best: &mut u64,
    ) {
        let (fl, rem) = fl_rem;
        let Some((first, rest)) = options.split_first() else {
            let plus = extras.iter().filter(|&&x| x == fl + 1).count();
            if extras.iter().all(|&x| x == fl || x == fl + 1) && plus == rem {
                *best = (*best).min(cost);
            }
            return;
        };
        for &(m, c) in first {
            for (i, x) in extras.iter_mut().enumerate() {
                *x += ((m >> i) & 1) as usize;
            }
            go(rest, extras, cost + c, fl_rem, best);
            for (i, x) in extras.iter_mut().enumerate() {
                *x -= ((m >> i) & 1) as usize;
            }
        }
    }
    let mut best = u64::MAX;
    go(
        &options,
        &mut vec![0; n],
        0,
        (e_total / n, e_total % n),
        &mut best,
    );
    best
}

fn pa(topic: &str, partition: i32, replicas: &[i32]) -> PartitionAssignment {
    PartitionAssignment {
        topic: topic.into(),
        partition,
        replicas: replicas.to_vec(),
    }
}

fn brokers(ids: &[i32]) -> Vec<Broker> {
    ids.iter().map(|&i| Broker::new(i)).collect()
}

#[test]
fn errors_name_what_to_fix() {
    let current = vec![pa("orders", 0, &[1, 2, 3]), pa("orders", 1, &[2, 3, 1])];
    let req = |b: &[i32]| PlanRequest {
        current: current.clone(),
        brokers: brokers(b),
        ..Default::default()
    };
    assert_eq!(
        plan(&req(&[1, 2])).unwrap_err().to_string(),
        "topic orders has replication factor 3 but only 2 brokers remain; lower the topic's replication factor first"
    );
    assert_eq!(
        plan(&req(&[1])).unwrap_err().to_string(),
        "topic orders has replication factor 3 but only 1 broker remains; lower the topic's replication factor first"
    );
    assert_eq!(plan(&req(&[])).unwrap_err(), PlanError::NoBrokers);
    assert_eq!(
        plan(&req(&[1, 1, 2])).unwrap_err(),
        PlanError::DuplicateBroker(1)
    );
    assert_eq!(
        plan(&req(&[-1, 2, 3])).unwrap_err(),
        PlanError::InvalidBrokerId(-1)
    );

    let mut r = req(&[1, 2, 3]);
    r.current.push(pa("x", 0, &[1, 1]));
    assert_eq!(
        plan(&r).unwrap_err().to_string(),
        "partition x-0 lists broker 1 twice in its replicas"
    );
    let mut r = req(&[1, 2, 3]);
    r.current.push(pa("orders", 0, &[1]));
    assert!(matches!(
        plan(&r).unwrap_err(),
        PlanError::DuplicatePartition { .. }
    ));
    let mut r = req(&[1, 2, 3]);
    r.current.push(pa("x", 0, &[]));
    assert!(
        plan(&r)
            .unwrap_err()
            .to_string()
            .contains("x-0 has no replicas")
    );

    let mut r = req(&[1, 2, 3]);
    r.replication_factors.insert("orders".into(), 4);
    assert_eq!(
        plan(&r).unwrap_err().to_string(),
        "cannot raise topic orders to replication factor 4: only 3 brokers remain"
    );
    r.replication_factors.insert("orders".into(), 0);
    assert!(
        plan(&r)
            .unwrap_err()
            .to_string()
            .contains("topic orders; it must be at least 1")
    );
    let mut r = req(&[1, 2]);
    r.replication_factors.insert("orders".into(), 2);
    assert!(
        plan(&r).is_ok(),
        "lowering the RF makes the decommission possible"
    );
    let mut r = req(&[1, 2, 3]);
    r.replication_factors.insert("payments".into(), 2);
    assert_eq!(
        plan(&r).unwrap_err(),
        PlanError::UnknownTopic("payments".into())
    );
    let mut r = req(&[1, 2, 3]);
    r.brokers[0].rack = Some("a".into());
    assert_eq!(plan(&r).unwrap_err(), PlanError::MissingRack(2));
}

#[test]
fn leaving_replica_stays_in_its_rack() {
    // Three racks of two brokers, RF 3, one replica per rack: broker 5 (rack c) leaves, so its
    // replicas must all go to broker 4, the other broker of rack c.
    let racks = ["a", "a", "b", "b", "c", "c"];
    let mut current = Vec::new();
    for p in 0..12 {
        current.push(pa("t", p, &[p % 2, 2 + (p / 2) % 2, 4 + (p / 4) % 2]));
    }
    let req = PlanRequest {
        current,
        brokers: (0..5)
            .map(|i| Broker::with_rack(i, racks[i as usize]))
            .collect(),
        leaving_racks: [(5, "c".to_string())].into(),
        ..Default::default()
    };
    let plan = plan(&req).unwrap();
    check_valid(&req, &plan);
    for (c, t) in req.current.iter().zip(&plan.target) {
        if c.replicas.contains(&5) {
            assert!(t.replicas.contains(&4), "{t:?}");
        }
    }
    assert_eq!(
        plan.summary.metrics.replicas_moved,
        plan.summary.lower_bound
    );
}

#[test]
fn leaving_replica_prefers_own_rack_when_balance_allows() {
    let brokers = vec![
        Broker::with_rack(0, "a"),
        Broker::with_rack(1, "a"),
        Broker::with_rack(2, "b"),
    ];
    let req = |current| PlanRequest {
        current,
        brokers: brokers.clone(),
        leaving_racks: [(3, "b".to_string())].into(),
        ..Default::default()
    };
    // All brokers hold one replica: a tie, so the replica from broker 3 stays in rack b.
    let tie = req(vec![
        pa("t", 0, &[0]),
        pa("t", 1, &[1]),
        pa("t", 2, &[2]),
        pa("t", 3, &[3]),
    ]);
    assert_eq!(plan(&tie).unwrap().target[3].replicas, vec![2]);
    // Broker 1 holds nothing: balance comes first.
    let skew = req(vec![
        pa("t", 0, &[0]),
        pa("t", 1, &[2]),
        pa("t", 2, &[2]),
        pa("t", 3, &[3]),
    ]);
    assert_eq!(plan(&skew).unwrap().target[3].replicas, vec![1]);
}

#[test]
fn decommission_keeps_leaders_where_free_and_balances_them() {
    let current: Vec<PartitionAssignment> =
        (0..12).map(|p| pa("t", p, &[p % 4, (p + 1) % 4])).collect();
    let req = PlanRequest {
        current: current.clone(),
        brokers: brokers(&[0, 1, 2]),
        ..Default::default()
    };
    let plan = plan(&req).unwrap();
    check_valid(&req, &plan);
    assert_eq!(plan.summary.metrics.replicas_moved, 6);
    assert!(plan.summary.metrics.leader_spread <= 1);
    assert!(plan.summary.metrics.replica_spread <= 1);
    // Partitions without broker 3 keep their order unless leader balance needs a change.
    let changed = moves(&current, &plan.target);
    assert!(
        changed.iter().filter(|m| m.is_reorder_only()).count() <= 4,
        "{changed:?}"
    );
}

#[test]
fn rf_decrease_drops_leaving_replica_first() {
    let req = PlanRequest {
        current: vec![pa("t", 0, &[3, 0, 1]), pa("t", 1, &[0, 1, 2])],
        brokers: brokers(&[0, 1, 2]),
        replication_factors: [("t".to_string(), 2)].into(),
        ..Default::default()
    };
    let plan = plan(&req).unwrap();
    assert_eq!(plan.summary.metrics.replicas_moved, 0);
    let mut p0 = plan.target[0].replicas.clone();
    p0.sort();
    assert_eq!(p0, vec![0, 1]);
    assert!(plan.target[1].replicas.contains(&0), "the leader stays");
}

#[test]
fn moves_lists_changed_partitions() {
    let current = vec![
        pa("t", 0, &[1, 2]),
        pa("t", 1, &[2, 3]),
        pa("t", 2, &[3, 1]),
    ];
    let target = vec![
        pa("t", 0, &[1, 2]),
        pa("t", 1, &[3, 2]),
        pa("t", 2, &[3, 4]),
    ];
    let m = moves(&current, &target);
    assert_eq!(m.len(), 2);
    assert!(m[0].is_reorder_only());
    assert_eq!(m[1].added(), vec![4]);
    assert_eq!(m[1].removed(), vec![1]);
}

#[test]
fn empty_assignment_plans_nothing() {
    let plan = plan(&PlanRequest {
        brokers: brokers(&[1]),
        ..Default::default()
    })
    .unwrap();
    assert!(plan.target.is_empty());
    assert_eq!(plan.summary.lower_bound, 0);
    assert_eq!(plan.summary.ratio(), 1.0);
}

#[test]
fn same_broker_set_changes_nothing() {
    let c = cluster(Shape {
        brokers: 7,
        topics: 4,
        max_partitions: 10,
        racks: 2,
        balanced: false,
        seed: 7,
    });
    let req = request(&c, &c.holding());
    let plan = plan(&req).unwrap();
    assert_eq!(plan.summary.mode, Mode::PlaceOnly);
    assert_eq!(plan.summary.metrics.replicas_moved, 0);
    assert_eq!(plan.summary.metrics.partitions_moved, 0);
}
