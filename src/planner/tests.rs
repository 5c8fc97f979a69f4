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
    let ring = ring(&brokers, &racks);
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

/// Brokers in rack-interleaved order (like Kafka's placer), so round-robin spreads over racks.
fn ring(brokers: &[i32], racks: &BTreeMap<i32, String>) -> Vec<i32> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for &b in brokers {
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
    ring
}

/// A start balanced overall *and* per topic: the replicas of every partition take consecutive
/// positions of the ring, continuing from partition to partition and from topic to topic, so
/// each topic's replicas, and all replicas, cover a run of consecutive positions (replica
/// spread <= 1 per topic and overall). `rf` gives every topic the same RF. Each replica list is
/// rotated at random, so leaders start anywhere (balancing them is the planner's job).
fn dense(s: Shape, rf: Option<usize>) -> Cluster {
    let mut c = cluster(s);
    let mut rng = Rng(s.seed ^ 0xD3);
    let ring = ring(&c.brokers, &c.racks);
    let mut order: Vec<usize> = (0..c.current.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&c.current[a], &c.current[b]);
        (&a.topic, a.partition).cmp(&(&b.topic, b.partition))
    });
    let mut cursor = rng.below(ring.len());
    for i in order {
        let p = &mut c.current[i];
        let r = rf.unwrap_or(p.replicas.len());
        p.replicas = (0..r).map(|j| ring[(cursor + j) % ring.len()]).collect();
        p.replicas.rotate_left(rng.below(r));
        cursor += r;
    }
    let m = metrics::evaluate(&c.current, &c.current, &c.brokers, &c.sizes);
    assert!(
        m.replica_spread <= 1 && m.topic_replica_spread <= 1,
        "{m:?}"
    );
    c
}

/// Another balanced start: partition by partition, the replicas go to the brokers holding
/// fewest of the topic, then fewest overall, ties broken at random. Usually, not always,
/// balanced (callers check).
fn greedy_balanced(s: Shape) -> Cluster {
    let mut c = cluster(s);
    let mut rng = Rng(s.seed ^ 0x77);
    let mut order: Vec<usize> = (0..c.current.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&c.current[a], &c.current[b]);
        (&a.topic, a.partition).cmp(&(&b.topic, b.partition))
    });
    let mut total: BTreeMap<i32, usize> = c.brokers.iter().map(|&b| (b, 0)).collect();
    let mut topic: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for i in order {
        let p = &mut c.current[i];
        let r = p.replicas.len();
        let mut keyed: Vec<(usize, usize, u64, i32)> = c
            .brokers
            .iter()
            .map(|&b| {
                (
                    topic.get(&(p.topic.clone(), b)).copied().unwrap_or(0),
                    total[&b],
                    rng.next(),
                    b,
                )
            })
            .collect();
        keyed.sort();
        p.replicas = keyed[..r].iter().map(|x| x.3).collect();
        for &b in &p.replicas {
            *total.get_mut(&b).unwrap() += 1;
            *topic.entry((p.topic.clone(), b)).or_default() += 1;
        }
    }
    c
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

/// The brokers of `a` that `b` does not list, in `a`'s order.
fn without(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

/// Distinct racks of the target brokers.
fn target_rack_count(req: &PlanRequest) -> usize {
    req.brokers
        .iter()
        .filter_map(|b| b.rack.as_deref())
        .collect::<BTreeSet<_>>()
        .len()
}

/// The topics of an assignment, sorted.
fn topic_names(parts: &[PartitionAssignment]) -> Vec<&str> {
    parts
        .iter()
        .map(|p| p.topic.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
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
    let target_racks = target_rack_count(req);
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

/// Preferred leaders end balanced wherever that is reachable by reordering the target's
/// replicas (`leaders.rs`: augmenting paths are complete), whatever the RFs:
/// - a topic whose leaders can be balanced (an independent flow check) has leader spread <= 1;
/// - if leaders can be balanced per topic and overall at once, both spreads are <= 1;
/// - the module's promise for uniform RF: replicas balanced means leaders balanced (such a
///   choice always exists then; asserted directly, not through the flow check).
fn check_leaders(req: &PlanRequest, plan: &Plan) {
    let m = &plan.summary.metrics;
    let brokers = ids(req);
    if uniform_rf(&plan.target) && m.replica_spread <= 1 && m.topic_replica_spread <= 1 {
        assert!(
            m.leader_spread <= 1 && m.topic_leader_spread <= 1,
            "leaders unbalanced although replicas are balanced: {m:?}\n{req:?}"
        );
    }
    let topics = topic_names(&plan.target);
    let mut all_topics_reachable = true;
    for &t in &topics {
        if leaders_balanceable(&plan.target, &brokers, &[t], false) {
            let spread = topic_leader_spread(&plan.target, &brokers, t);
            assert!(
                spread <= 1,
                "topic {t}: leader spread {spread} although balance is reachable\n{req:?}"
            );
        } else {
            all_topics_reachable = false;
        }
    }
    if all_topics_reachable && leaders_balanceable(&plan.target, &brokers, &topics, true) {
        assert!(
            m.leader_spread <= 1 && m.topic_leader_spread <= 1,
            "leaders unbalanced although reachable: {m:?}\n{req:?}"
        );
    }
}

/// Placement-only guarantee: no moved replica could be re-placed to make its topic's counts
/// (or, at equal topic balance, the cluster counts) strictly more balanced.
fn check_water_filled(req: &PlanRequest, plan: &Plan) {
    let brokers = ids(req);
    let racks = racks_of(req);
    let target_racks = target_rack_count(req);
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

/// Dinic's max flow, for the independent feasibility checks below (small graphs).
struct MaxFlow {
    out: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<i64>,
    level: Vec<u32>,
    next: Vec<usize>,
}

impl MaxFlow {
    fn new(nodes: usize) -> Self {
        MaxFlow {
            out: vec![Vec::new(); nodes],
            to: Vec::new(),
            cap: Vec::new(),
            level: Vec::new(),
            next: Vec::new(),
        }
    }

    fn edge(&mut self, u: usize, v: usize, cap: i64) {
        self.out[u].push(self.to.len());
        self.to.push(v);
        self.cap.push(cap);
        self.out[v].push(self.to.len());
        self.to.push(u);
        self.cap.push(0);
    }

    fn push(&mut self, u: usize, t: usize, limit: i64) -> i64 {
        if u == t {
            return limit;
        }
        while self.next[u] < self.out[u].len() {
            let e = self.out[u][self.next[u]];
            let v = self.to[e];
            if self.cap[e] > 0 && self.level[v] == self.level[u] + 1 {
                let got = self.push(v, t, limit.min(self.cap[e]));
                if got > 0 {
                    self.cap[e] -= got;
                    self.cap[e ^ 1] += got;
                    return got;
                }
            }
            self.next[u] += 1;
        }
        0
    }

    fn run(&mut self, s: usize, t: usize) -> i64 {
        let mut flow = 0;
        loop {
            self.level = vec![u32::MAX; self.out.len()];
            self.level[s] = 0;
            let mut queue = std::collections::VecDeque::from([s]);
            while let Some(u) = queue.pop_front() {
                for &e in &self.out[u] {
                    let v = self.to[e];
                    if self.cap[e] > 0 && self.level[v] == u32::MAX {
                        self.level[v] = self.level[u] + 1;
                        queue.push_back(v);
                    }
                }
            }
            if self.level[t] == u32::MAX {
                return flow;
            }
            self.next = vec![0; self.out.len()];
            loop {
                let got = self.push(s, t, i64::MAX);
                if got == 0 {
                    break;
                }
                flow += got;
            }
        }
    }
}

const UNBOUNDED: i64 = 1 << 40;

/// Whether some flow from `s` to `t` meets every edge's `[lo, hi]` (the usual reduction to a
/// max flow from a super source to a super sink).
fn feasible(nodes: usize, edges: &[(usize, usize, i64, i64)], s: usize, t: usize) -> bool {
    if edges.iter().any(|&(_, _, lo, hi)| lo > hi) {
        return false;
    }
    let (ss, tt) = (nodes, nodes + 1);
    let mut f = MaxFlow::new(nodes + 2);
    let mut excess = vec![0i64; nodes];
    for &(u, v, lo, hi) in edges {
        f.edge(u, v, hi - lo);
        excess[v] += lo;
        excess[u] -= lo;
    }
    f.edge(t, s, UNBOUNDED);
    let mut need = 0;
    for (v, &x) in excess.iter().enumerate() {
        if x > 0 {
            f.edge(ss, v, x);
            need += x;
        } else if x < 0 {
            f.edge(v, tt, -x);
        }
    }
    f.run(ss, tt) == need
}

/// Whether preferred leaders can be chosen among each partition's replicas so that every
/// broker leads `floor` or `ceil` of the partitions of each topic in `topics` (per topic), and,
/// if `overall`, of all those partitions too. Independent of the planner's path search.
fn leaders_balanceable(
    target: &[PartitionAssignment],
    brokers: &[i32],
    topics: &[&str],
    overall: bool,
) -> bool {
    let n = brokers.len() as i64;
    let pos: BTreeMap<i32, usize> = brokers.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    let parts: Vec<&PartitionAssignment> = target
        .iter()
        .filter(|p| topics.contains(&p.topic.as_str()))
        .collect();
    // Nodes: source, sink, partitions, (topic, broker), brokers.
    let (s, t) = (0, 1);
    let part0 = 2;
    let tb0 = part0 + parts.len();
    let b0 = tb0 + topics.len() * brokers.len();
    let mut edges = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let ti = topics.iter().position(|t| *t == p.topic).unwrap();
        edges.push((s, part0 + i, 1, 1));
        for b in &p.replicas {
            edges.push((part0 + i, tb0 + ti * brokers.len() + pos[b], 0, 1));
        }
    }
    for (ti, topic) in topics.iter().enumerate() {
        let count = parts.iter().filter(|p| p.topic == *topic).count() as i64;
        let (lo, hi) = (count / n, (count + n - 1) / n);
        for b in 0..brokers.len() {
            edges.push((tb0 + ti * brokers.len() + b, b0 + b, lo, hi));
        }
    }
    let count = parts.len() as i64;
    let (lo, hi) = if overall {
        (count / n, (count + n - 1) / n)
    } else {
        (0, UNBOUNDED)
    };
    for b in 0..brokers.len() {
        edges.push((b0 + b, t, lo, hi));
    }
    feasible(b0 + brokers.len(), &edges, s, t)
}

/// Leader spread of one topic's partitions over `brokers`.
fn topic_leader_spread(target: &[PartitionAssignment], brokers: &[i32], topic: &str) -> u64 {
    let mut led: BTreeMap<i32, u64> = brokers.iter().map(|&b| (b, 0)).collect();
    for p in target.iter().filter(|p| p.topic == topic) {
        *led.get_mut(&p.replicas[0]).unwrap() += 1;
    }
    metrics::spread(&led.into_values().collect::<Vec<_>>())
}

/// Whether a placement-only plan (only the leaving brokers' replicas and those an RF increase
/// adds move) can end with replica counts within 1 overall and per topic: a flow of these
/// homeless replicas, each to a target broker its partition does not use, into each (topic,
/// broker) and broker at least what it lacks to reach the balanced `floor` and at most what
/// keeps it within the `ceil`. Racks are ignored. `None` with an RF decrease (which replicas
/// stay is then the planner's choice).
fn balanced_placement_exists(req: &PlanRequest) -> Option<bool> {
    let rf = |p: &PartitionAssignment| {
        req.replication_factors
            .get(&p.topic)
            .copied()
            .unwrap_or(p.replicas.len())
    };
    if req.current.iter().any(|p| rf(p) < p.replicas.len()) {
        return None;
    }
    let brokers = ids(req);
    let m = brokers.len() as i64;
    let pos: BTreeMap<i32, usize> = brokers.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    let topics = topic_names(&req.current);
    let (s, t) = (0, 1);
    let part0 = 2;
    let tb0 = part0 + req.current.len();
    let b0 = tb0 + topics.len() * brokers.len();
    let mut edges = Vec::new();
    let mut topic_count = vec![vec![0i64; brokers.len()]; topics.len()];
    let mut total = vec![0i64; brokers.len()];
    let mut replicas = vec![0i64; topics.len()];
    for (i, p) in req.current.iter().enumerate() {
        let ti = topics.binary_search(&p.topic.as_str()).unwrap();
        replicas[ti] += rf(p) as i64;
        let staying: Vec<usize> = p
            .replicas
            .iter()
            .filter_map(|b| pos.get(b).copied())
            .collect();
        for &b in &staying {
            topic_count[ti][b] += 1;
            total[b] += 1;
        }
        let homeless = (rf(p) - staying.len()) as i64;
        edges.push((s, part0 + i, homeless, homeless));
        for b in (0..brokers.len()).filter(|b| !staying.contains(b)) {
            edges.push((part0 + i, tb0 + ti * brokers.len() + b, 0, 1));
        }
    }
    for ti in 0..topics.len() {
        let (lo, hi) = (replicas[ti] / m, (replicas[ti] + m - 1) / m);
        for (b, &c) in topic_count[ti].iter().enumerate() {
            edges.push((
                tb0 + ti * brokers.len() + b,
                b0 + b,
                (lo - c).max(0),
                hi - c,
            ));
        }
    }
    let all: i64 = replicas.iter().sum();
    let (lo, hi) = (all / m, (all + m - 1) / m);
    for (b, &c) in total.iter().enumerate() {
        edges.push((b0 + b, t, (lo - c).max(0), hi - c));
    }
    Some(feasible(b0 + brokers.len(), &edges, s, t))
}

/// Placement only, without racks: the result is balanced (spread <= 1 per topic and overall)
/// exactly when some placement of the replicas that must move is (the chain searches of
/// `balance.rs` are complete). Both ways: the flow check is exact, so no plan beats it.
fn check_balanced_where_reachable(req: &PlanRequest, plan: &Plan) {
    if req.brokers.iter().any(|b| b.rack.is_some()) {
        return;
    }
    let Some(reachable) = balanced_placement_exists(req) else {
        return;
    };
    let m = &plan.summary.metrics;
    let balanced = m.replica_spread <= 1 && m.topic_replica_spread <= 1;
    assert_eq!(
        balanced, reachable,
        "balanced {balanced} but a balanced placement exists: {reachable}: {m:?}\n{req:?}"
    );
}

/// Rack choices (the module's promises beyond the hard floor that `check_valid` checks):
/// - placement only: every replica placed raised the partition's racks while it could: a
///   touched partition spans at least `min(RF, racks)` or its kept replicas' racks plus one per
///   placed replica, and no placed replica could be swapped for a free target broker to span
///   more racks;
/// - any mode, for every replica the plan placed: no swap that costs no balance (to a broker
///   holding one fewer of the topic and one fewer overall, so every count multiset stays the
///   same) would span more racks;
/// - a replica that left a broker (the partition lost exactly that one and gained one, so the
///   pairing is certain) sits in the rack of the broker it left unless no such swap could put
///   it there at the same number of racks.
fn check_rack_choices(req: &PlanRequest, plan: &Plan) {
    let racks = racks_of(req);
    let target_racks = target_rack_count(req);
    if target_racks == 0 {
        return;
    }
    let brokers = ids(req);
    let (total, topic) = counts(&plan.target, &brokers);
    let place_only = plan.summary.mode == Mode::PlaceOnly;
    for (c, t) in req.current.iter().zip(&plan.target) {
        let div = diversity(&t.replicas, &racks);
        let added = without(&t.replicas, &c.replicas);
        let removed = without(&c.replicas, &t.replicas);
        if added.is_empty() {
            continue;
        }
        if place_only {
            let kept = without(&t.replicas, &without(&t.replicas, &c.replicas));
            let reachable = (diversity(&kept, &racks) + added.len())
                .min(t.replicas.len())
                .min(target_racks);
            assert!(
                div >= reachable,
                "{c:?} -> {t:?} spans {div} racks, could {reachable}"
            );
        }
        let swapped = |a: i32, b: i32| {
            let mut r = t.replicas.clone();
            *r.iter_mut().find(|x| **x == a).unwrap() = b;
            r
        };
        let free_of_cost = |a: i32, b: i32| {
            topic[&(t.topic.clone(), b)] + 1 == topic[&(t.topic.clone(), a)]
                && total[&b] + 1 == total[&a]
        };
        for &a in &added {
            for &b in brokers.iter().filter(|b| !t.replicas.contains(b)) {
                let more = diversity(&swapped(a, b), &racks) > div;
                assert!(
                    !(more && (place_only || free_of_cost(a, b))),
                    "{c:?} -> {t:?}: {b} instead of {a} would span more racks"
                );
            }
        }
        if let ([a], [o]) = (added.as_slice(), removed.as_slice())
            && let Some(home) = racks.get(o)
            && racks.get(a) != Some(home)
        {
            for &b in brokers
                .iter()
                .filter(|b| !t.replicas.contains(b) && racks.get(b) == Some(home))
            {
                assert!(
                    !(free_of_cost(*a, b) && diversity(&swapped(*a, b), &racks) >= div),
                    "{c:?} -> {t:?}: the replica from {o} could stay in rack {home} on {b}"
                );
            }
        }
    }
}

/// The same request with `current` in another order (and the broker list reversed) gives the
/// same plan: the same target for every partition (in the new request order) and summary.
fn check_order_independent(req: &PlanRequest, plan: &Plan, seed: u64) {
    let mut rng = Rng(seed ^ 0x0DE5);
    let mut shuffled = req.clone();
    for i in (1..shuffled.current.len()).rev() {
        let j = rng.below(i + 1);
        shuffled.current.swap(i, j);
    }
    shuffled.brokers.reverse();
    let again = super::plan(&shuffled).unwrap();
    let by_partition = |p: &Plan| -> BTreeMap<(String, i32), Vec<i32>> {
        p.target
            .iter()
            .map(|t| ((t.topic.clone(), t.partition), t.replicas.clone()))
            .collect()
    };
    assert_eq!(by_partition(&again), by_partition(plan));
    for (c, t) in shuffled.current.iter().zip(&again.target) {
        assert_eq!((&c.topic, c.partition), (&t.topic, t.partition));
    }
    assert_eq!(again.summary, plan.summary);
}

/// The target as it would be if every new replica took the slot of the one it replaced (new
/// replicas of an RF increase at the end) and no leadership changed, when that is certain: no
/// partition lost more than one replica, and none gained more than one more than it lost.
fn slots_kept(req: &PlanRequest, plan: &Plan) -> Option<Vec<PartitionAssignment>> {
    req.current
        .iter()
        .zip(&plan.target)
        .map(|(c, t)| {
            let added = without(&t.replicas, &c.replicas);
            let mut replicas = without(&c.replicas, &without(&c.replicas, &t.replicas));
            match (c.replicas.len() - replicas.len(), added.as_slice()) {
                (0, []) => replicas = c.replicas.clone(),
                (0, [a]) => {
                    replicas = c.replicas.clone();
                    replicas.push(*a);
                }
                (1, [a]) => {
                    replicas = c
                        .replicas
                        .iter()
                        .map(|b| if t.replicas.contains(b) { *b } else { *a })
                        .collect();
                }
                _ => return None,
            }
            Some(PartitionAssignment {
                replicas,
                ..t.clone()
            })
        })
        .collect()
}

/// The fewest moves to a result balanced per topic and overall (rebalance mode, no RF
/// change), computed independently of `targets.rs` with a plain successive-shortest-path
/// min-cost flow: every replica on a leaving broker moves, and topic `t` needs
/// `sum_b max(0, c_t[b] - q_t)` more moves, less one per "extra" (the `+1` of the `R_t % n`
/// brokers that end with `q_t + 1`) given to a broker with `c_t[b] > q_t`; the extras must
/// give every broker `E / n` or `E / n + 1` of them (`E % n` brokers get the `+1`).
fn independent_rebalance_minimum(req: &PlanRequest) -> u64 {
    let brokers = ids(req);
    let n = brokers.len();
    let target: BTreeSet<i32> = brokers.iter().copied().collect();
    let (_, staying) = counts(
        &req.current
            .iter()
            .map(|p| PartitionAssignment {
                replicas: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| target.contains(b))
                    .collect(),
                ..p.clone()
            })
            .collect::<Vec<_>>(),
        &brokers,
    );
    let mut replicas: BTreeMap<&str, usize> = BTreeMap::new();
    let mut homeless = 0;
    for p in &req.current {
        *replicas.entry(&p.topic).or_default() += p.replicas.len();
        homeless += p.replicas.iter().filter(|b| !target.contains(b)).count() as u64;
    }
    // Nodes: source 0, topics, brokers, X, sink. Edges: (to, cap, cost, reverse index).
    let k = replicas.len();
    let (xnode, sink) = (1 + k + n, 2 + k + n);
    let mut g: Vec<Vec<(usize, i64, i64, usize)>> = vec![Vec::new(); sink + 1];
    let add = |g: &mut Vec<Vec<(usize, i64, i64, usize)>>, u: usize, v: usize, cap, cost| {
        let (ru, rv) = (g[v].len(), g[u].len());
        g[u].push((v, cap, cost, ru));
        g[v].push((u, 0, -cost, rv));
    };
    let mut excess_total = 0u64;
    let mut e_total = 0usize;
    for (ti, (topic, &r)) in replicas.iter().enumerate() {
        let (q, e) = ((r / n) as i64, r % n);
        e_total += e;
        add(&mut g, 0, 1 + ti, e as i64, 0);
        for (bi, b) in brokers.iter().enumerate() {
            let c = staying[&(topic.to_string(), *b)];
            excess_total += (c - q).max(0) as u64;
            add(&mut g, 1 + ti, 1 + k + bi, 1, if c > q { -1 } else { 0 });
        }
    }
    for bi in 0..n {
        add(&mut g, 1 + k + bi, sink, (e_total / n) as i64, 0);
        add(&mut g, 1 + k + bi, xnode, 1, 0);
    }
    add(&mut g, xnode, sink, (e_total % n) as i64, 0);
    // Successive shortest paths with Bellman-Ford (costs are small, graphs tiny).
    let mut cost = 0i64;
    loop {
        let mut dist = vec![i64::MAX; sink + 1];
        let mut prev = vec![(usize::MAX, usize::MAX); sink + 1];
        dist[0] = 0;
        let mut changed = true;
        while changed {
            changed = false;
            for u in 0..=sink {
                if dist[u] == i64::MAX {
                    continue;
                }
                for (i, &(v, cap, c, _)) in g[u].iter().enumerate() {
                    if cap > 0 && dist[u] + c < dist[v] {
                        dist[v] = dist[u] + c;
                        prev[v] = (u, i);
                        changed = true;
                    }
                }
            }
        }
        if dist[sink] == i64::MAX {
            break;
        }
        let mut v = sink;
        while v != 0 {
            let (u, i) = prev[v];
            g[u][i].1 -= 1;
            let r = g[u][i].3;
            g[v][r].1 += 1;
            v = u;
        }
        cost += dist[sink];
    }
    // `cost` is minus the extras that save a move.
    homeless + (excess_total as i64 + cost) as u64
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
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Decommission moves exactly the leaving brokers' replicas: the exact lower bound, in
    /// replicas and in bytes; they are water-filled, balanced wherever a balanced placement
    /// exists (no racks), placed as racks allow; the plan is valid and independent of the
    /// request's order.
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
        check_balanced_where_reachable(&req, &plan);
        check_rack_choices(&req, &plan);
        check_leaders(&req, &plan);
        check_order_independent(&req, &plan, s.seed);
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
        // The bound is exact (an independent min-cost flow), so it is neither inflated (which
        // would make "at most 1.05 x the bound" hollow) nor below the simple bounds, which
        // every balanced result needs.
        prop_assert_eq!(sum.lower_bound, independent_rebalance_minimum(&req));
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
        check_order_independent(&req, &plan, s.seed);
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
        if req.replication_factors.is_empty() {
            prop_assert_eq!(sum.lower_bound, independent_rebalance_minimum(&req));
        }
        check_leaders(&req, &plan);
        check_order_independent(&req, &plan, s.seed);
    }

    /// Racks, whatever the change (decommission, scale-up, rebalance in place, RF increase),
    /// from balanced and unbalanced starts: diversity is never lost (`check_valid`), placed
    /// replicas raise it where they can, and a replica leaving a broker stays in its rack when
    /// that costs no balance (`check_rack_choices`); the plan does not depend on the order.
    #[test]
    fn racks_are_spread_and_kept(
        s in shape().prop_map(|s| Shape { racks: 1 + s.racks, ..s }),
        kind in 0u8..4,
        dense_start in any::<bool>(),
    ) {
        let c = if dense_start { dense(s, None) } else { cluster(s) };
        let mut rng = Rng(s.seed ^ 4);
        let req = match kind {
            0 => match decommission(&c, &mut rng) { Some(r) => r, None => return Ok(()) },
            1 => scale_up(&c, &mut rng),
            2 => {
                let mut r = request(&c, &c.brokers);
                r.rebalance = true;
                r
            }
            _ => {
                let mut r = request(&c, &c.holding());
                for p in &c.current {
                    let rf = (p.replicas.len() + 1).min(r.brokers.len());
                    r.replication_factors.insert(p.topic.clone(), rf);
                }
                r
            }
        };
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        check_rack_choices(&req, &plan);
        check_order_independent(&req, &plan, s.seed);
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
        check_balanced_where_reachable(&req, &plan);
        check_rack_choices(&req, &plan);
        check_leaders(&req, &plan);
        check_order_independent(&req, &plan, s.seed);
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
        prop_assert_eq!(sum.lower_bound, independent_rebalance_minimum(&req));
        let (overall, per_topic) = simple_lower_bounds(&req);
        prop_assert!(sum.lower_bound >= overall.max(per_topic));
        check_leaders(&req, &plan);
    }

    /// Scale-up from a balanced start (replica spread <= 1 overall and per topic; three
    /// layouts), against the physical bound `k / (N + k) x R` for `k` brokers added to `N`
    /// holding `R` replicas, independent of the planner's own bound.
    ///
    /// With one or two topics the fewest moves to a result balanced per topic and overall are
    /// at most that bound, with no slack at all (so `moves * (N + k) <= k * R`, stricter than
    /// the 1.05 target). Why: every old broker holds at least `q_t = R_t / n` of each topic, so
    /// the minimum is `R - N sum_t q_t - M`, where `M` counts the "extras" (the `+1` of the
    /// `R_t % n` brokers ending with `q_t + 1`) left on an old broker that holds more than
    /// `q_t`; the bound holds iff `M >= N E / n` (`E` = all extras). With one topic the
    /// brokers above `q_t` are all old brokers or at least `e_t` of them, enough either way;
    /// with two, overall balance makes the two sets of such brokers disjoint or together all
    /// old brokers, and Hall's condition gives `M >= N E / n` in each case.
    ///
    /// With three or more topics that fails, and balance per topic and overall can need far
    /// more than the physical bound (`balance_can_cost_more_than_the_physical_bound`: 1.5x;
    /// random clusters reach 1.7x). The promise of issue 5 ("at most 1.05 x k/(N+k)") is not
    /// reachable together with per-topic balance there; what is checked instead is that the
    /// planner meets the true minimum, computed independently (min-cost flow here, brute
    /// force in `lower_bound_is_exact_on_tiny_clusters`).
    #[test]
    fn scale_up_from_a_balanced_start_meets_the_physical_bound(s in plain_shape(), kind in 0usize..3) {
        let c = match kind {
            0 => dense(s, None),
            1 => cluster(s),
            _ => greedy_balanced(s),
        };
        let start = metrics::evaluate(&c.current, &c.current, &c.brokers, &c.sizes);
        if start.replica_spread > 1 || start.topic_replica_spread > 1 {
            return Ok(());
        }
        let mut rng = Rng(s.seed ^ 6);
        let req = scale_up(&c, &mut rng);
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let sum = &plan.summary;
        prop_assert!(sum.metrics.replica_spread <= 1 && sum.metrics.topic_replica_spread <= 1, "{:?}", sum);
        let (n, k) = (c.brokers.len() as u64, (req.brokers.len() - c.brokers.len()) as u64);
        let r: u64 = c.current.iter().map(|p| p.replicas.len() as u64).sum();
        let topics = c.current.iter().map(|p| &p.topic).collect::<BTreeSet<_>>().len();
        let moved = sum.metrics.replicas_moved;
        if topics <= 2 {
            prop_assert!(
                moved * (n + k) <= k * r,
                "{} moves, physical bound {}/{} x {}", moved, k, n + k, r
            );
        }
        prop_assert_eq!(moved, sum.lower_bound);
        prop_assert_eq!(sum.lower_bound, independent_rebalance_minimum(&req));
    }

    /// Decommission from a balanced start (replicas within 1 per topic and overall, every
    /// partition with the same RF), moving only the leaving brokers' replicas: the result is
    /// balanced per topic and overall, replicas and preferred leaders, whenever the lower bound
    /// allows it, i.e. whenever some placement of the leaving replicas is balanced (an exact
    /// flow check, so the converse is asserted too). That is not always so: a replica cannot
    /// go to a broker that holds its partition, and the staying replicas are fixed, so one
    /// topic's balance can force a cluster spread of 2 (with RF 1 too), like scale-up with three
    /// topics; it is reachable in about 93% of these cases. Leaders follow from the module's
    /// promise for uniform RF once replicas are balanced.
    #[test]
    fn decommission_from_a_balanced_start_ends_balanced(s in plain_shape(), rf in 1usize..4) {
        let c = dense(s, Some(rf.min(s.brokers)));
        let mut rng = Rng(s.seed ^ 7);
        let Some(req) = decommission(&c, &mut rng) else { return Ok(()) };
        let plan = plan(&req).unwrap();
        check_valid(&req, &plan);
        let m = &plan.summary.metrics;
        prop_assert_eq!(m.replicas_moved, plan.summary.lower_bound);
        let reachable = balanced_placement_exists(&req).unwrap();
        let balanced = m.replica_spread <= 1 && m.topic_replica_spread <= 1;
        prop_assert_eq!(balanced, reachable, "{:?}", m);
        if reachable {
            prop_assert!(m.leader_spread <= 1 && m.topic_leader_spread <= 1, "{:?}", m);
        }
        check_leaders(&req, &plan);
    }

    /// Where racks cannot matter, they change nothing: with every broker in one rack, every
    /// plan is the plan without racks, so all the rack-less guarantees (balance, exact lower
    /// bounds) hold with racks too. With several racks balance is best effort (module docs).
    #[test]
    fn a_single_rack_changes_nothing(s in plain_shape(), kind in 0u8..3) {
        let c = cluster(s);
        let mut rng = Rng(s.seed ^ 8);
        let plain = match kind {
            0 => match decommission(&c, &mut rng) { Some(r) => r, None => return Ok(()) },
            1 => scale_up(&c, &mut rng),
            _ => {
                let mut r = request(&c, &c.brokers);
                r.rebalance = true;
                r
            }
        };
        let mut racked = plain.clone();
        for b in &mut racked.brokers {
            b.rack = Some("only".into());
        }
        racked.leaving_racks = plan(&plain).unwrap().summary.leaving.iter().map(|&b| (b, "only".to_string())).collect();
        let (a, b) = (plan(&plain).unwrap(), plan(&racked).unwrap());
        prop_assert_eq!(a, b);
    }

    /// Leadership order is kept where that costs nothing: when the target with every new
    /// replica in the slot of the one it replaced (RF increases: at the end) already has
    /// balanced preferred leaders, per topic and overall, that is exactly the plan: no
    /// partition is reordered. Starts are leader-balanced where that is reachable (the
    /// planner's own reordering of the cluster), so the premise holds often: in a soak of 2000
    /// cases, for about 40% of the one-broker decommissions, 90% of the scale-ups that qualify
    /// (no partition with two new replicas) and 60% of the RF increases, mostly with plans that
    /// do move replicas.
    #[test]
    fn leaders_keep_their_order_where_it_costs_nothing(s in shape(), kind in 0u8..3) {
        let c0 = cluster(s);
        let mut c = c0.clone();
        c.current = plan(&request(&c0, &c0.holding())).unwrap().target;
        let mut rng = Rng(s.seed ^ 9);
        let req = match kind {
            0 => {
                let holding = c.holding();
                if holding.len() <= max_rf(&c) {
                    return Ok(());
                }
                let leaving = holding[rng.below(holding.len())];
                let stay: Vec<i32> = holding.into_iter().filter(|&b| b != leaving).collect();
                request(&c, &stay)
            }
            1 => scale_up(&c, &mut rng),
            _ => {
                let mut r = request(&c, &c.holding());
                for p in &c.current {
                    if rng.below(2) == 0 {
                        let rf = (p.replicas.len() + 1).min(r.brokers.len());
                        r.replication_factors.insert(p.topic.clone(), rf);
                    }
                }
                r
            }
        };
        let plan = plan(&req).unwrap();
        let Some(kept) = slots_kept(&req, &plan) else { return Ok(()) };
        let m = metrics::evaluate(&req.current, &kept, &ids(&req), &req.sizes);
        if m.leader_spread <= 1 && m.topic_leader_spread <= 1 {
            prop_assert_eq!(&plan.target, &kept);
        }
    }

    /// An impossible request (a topic's RF above the brokers that remain, as it is or as
    /// requested) is an error naming such a topic, its RF and the broker count, never a plan;
    /// lowering those topics' RF to what fits makes the same request plannable.
    #[test]
    fn impossible_requests_are_errors_naming_the_topic(s in shape(), pick in any::<u64>()) {
        let c = cluster(s);
        let mut rng = Rng(pick);
        let top = max_rf(&c);
        if top < 2 {
            return Ok(());
        }
        let holding = c.holding();
        let m = rng.range(1, top - 1).min(holding.len());
        let mut req = request(&c, &rng.pick(&holding, m));
        let topics: BTreeSet<String> = c.current.iter().map(|p| p.topic.clone()).collect();
        // One topic at the top RF keeps it, so the request stays impossible.
        let keep = &c.current.iter().find(|p| p.replicas.len() == top).unwrap().topic;
        for t in topics.iter().filter(|t| *t != keep) {
            if rng.below(3) == 0 {
                req.replication_factors.insert(t.clone(), rng.range(1, top + 1));
            }
        }
        let rf_of = |t: &str| {
            req.replication_factors.get(t).copied().unwrap_or_else(|| {
                c.current.iter().filter(|p| p.topic == t).map(|p| p.replicas.len()).max().unwrap()
            })
        };
        let too_big: Vec<&String> = topics.iter().filter(|t| rf_of(t) > m).collect();
        prop_assert!(!too_big.is_empty());
        let err = plan(&req).unwrap_err();
        let (topic, rf, brokers) = match &err {
            PlanError::ReplicationFactorAboveBrokers { topic, replication_factor, brokers } => {
                prop_assert!(!req.replication_factors.contains_key(topic));
                (topic, *replication_factor, *brokers)
            }
            PlanError::RequestedFactorAboveBrokers { topic, replication_factor, brokers } => {
                prop_assert_eq!(req.replication_factors.get(topic), Some(replication_factor));
                (topic, *replication_factor, *brokers)
            }
            other => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
        };
        prop_assert!(too_big.contains(&topic), "{} is not too big", topic);
        prop_assert_eq!(rf, rf_of(topic));
        prop_assert_eq!(brokers, m);
        let text = err.to_string();
        prop_assert!(text.contains(&format!("topic {topic} ")) && text.contains(&rf.to_string()), "{}", text);
        for t in too_big {
            req.replication_factors.insert(t.clone(), m);
        }
        let fixed = plan(&req).unwrap();
        check_valid(&req, &fixed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), ..ProptestConfig::default() })]

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
        prop_assert_eq!(plan_up.summary.lower_bound, independent_rebalance_minimum(&up));
        check_leaders(&up, &plan_up);
        if let Some(down) = decommission(&c, &mut rng) {
            let plan_down = plan(&down).unwrap();
            check_valid(&down, &plan_down);
            prop_assert_eq!(plan_down.summary.metrics.replicas_moved, plan_down.summary.lower_bound);
            check_water_filled(&down, &plan_down);
            check_balanced_where_reachable(&down, &plan_down);
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

/// Why the physical bound `k / (N + k) x R` is not a promise with three or more topics: six
/// balanced brokers (2 or 3 replicas each, every topic within 1) and two new ones. Topic
/// `wide` has 8 replicas, so on 8 brokers each must hold exactly one: brokers 0 and 5 give
/// one each to the new brokers. 16 replicas on 8 brokers is 2 each, so brokers 1 to 4 (3
/// each) must give one more each: 6 moves, the brute-force minimum, against a physical bound
/// of 2/8 x 16 = 4.
#[test]
fn balance_can_cost_more_than_the_physical_bound() {
    let current = vec![
        pa("narrow", 0, &[2, 1]),
        pa("narrow", 1, &[3, 4]),
        pa("wide", 0, &[5, 0]),
        pa("wide", 1, &[2, 1]),
        pa("wide", 2, &[3, 4]),
        pa("wide", 3, &[5, 0]),
        pa("single", 0, &[1]),
        pa("single", 1, &[2]),
        pa("single", 2, &[3]),
        pa("single", 3, &[4]),
    ];
    let start = metrics::evaluate(&current, &current, &[0, 1, 2, 3, 4, 5], &BTreeMap::new());
    assert!(start.replica_spread <= 1 && start.topic_replica_spread <= 1);
    let req = PlanRequest {
        current,
        brokers: brokers(&[0, 1, 2, 3, 4, 5, 6, 7]),
        ..Default::default()
    };
    let plan = plan(&req).unwrap();
    let m = &plan.summary.metrics;
    assert!(
        m.replica_spread == 0 && m.topic_replica_spread <= 1,
        "{m:?}"
    );
    assert_eq!(brute_force_bound(&req), 6);
    assert_eq!(plan.summary.lower_bound, 6);
    assert_eq!(m.replicas_moved, 6);
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
