//! Per-topic target replica counts for rebalance mode, chosen for the fewest moves.
//!
//! Topic `t` has `R_t` replicas on `n` brokers. A balanced result gives every broker `q_t =
//! R_t / n` of them, and `e_t = R_t % n` brokers one more (the topic's "extras"). Then every
//! broker's total is `sum_t q_t` plus its number of extras, so the totals are within 1 exactly
//! when every broker gets `E / n` or `E / n + 1` extras (`E = sum_t e_t`, and `E % n` brokers
//! get the `+1`).
//!
//! Reaching target `T_t[b]` from `c_t[b]` staying replicas takes `sum_b max(0, c_t[b] -
//! T_t[b])` moves plus one per homeless replica, and no plan can do with fewer. An extra given
//! to a broker with `c_t[b] > q_t` saves one move; anywhere else it saves nothing. So the
//! cheapest balanced targets give as many extras as possible to such "preferred" brokers while
//! keeping every broker's extras within the bounds above: a min-cost flow
//!
//! ```text
//! source -> topic t            capacity e_t
//! topic t -> broker b          capacity 1, cost 0 if c_t[b] > q_t else 1
//! broker b -> sink             capacity E / n
//! broker b -> X -> sink        capacity 1 per broker, E % n in total (who gets the +1)
//! ```
//!
//! A flow of value `E` always exists (every `e_t < n` and the broker capacities are even), and
//! its minimum cost is the number of extras that save nothing; the lower bound follows.
//! It is solved by successive shortest paths in phases, where the common cases need no search
//! (see `Extras::solve`).

/// Target counts, flattened `topic * n + broker`, for topics with `replicas[t]` replicas whose
/// staying replicas are `count[topic * n + broker]`.
pub(crate) fn choose(n: usize, replicas: &[usize], count: &[u32]) -> Vec<u32> {
    let mut target: Vec<u32> = Vec::with_capacity(count.len());
    let mut extras = Vec::new();
    for (t, &r) in replicas.iter().enumerate() {
        let q = (r / n) as u32;
        target.extend(std::iter::repeat_n(q, n));
        let e = r % n;
        if e > 0 {
            let preferred = (0..n).map(|b| count[t * n + b] > q).collect();
            extras.push((t, e as u32, preferred));
        }
    }
    if extras.is_empty() {
        return target;
    }
    let flow = Extras::solve(n, &extras);
    for (k, (t, _, _)) in extras.iter().enumerate() {
        for b in 0..n {
            if flow.x[k * n + b] {
                target[t * n + b] += 1;
            }
        }
    }
    target
}

struct Extras {
    n: usize,
    k: usize,
    need: Vec<u32>,
    preferred: Vec<bool>,
    /// `x[k * n + b]`: topic `k` gives its extra to broker `b`.
    x: Vec<bool>,
    got: Vec<u32>,
    base: Vec<u32>,
    plus: Vec<bool>,
    plus_used: u32,
    floor: u32,
    rem: u32,
}

impl Extras {
    fn solve(n: usize, topics: &[(usize, u32, Vec<bool>)]) -> Extras {
        let k = topics.len();
        let total: u32 = topics.iter().map(|t| t.1).sum();
        let mut f = Extras {
            n,
            k,
            need: topics.iter().map(|t| t.1).collect(),
            preferred: topics.iter().flat_map(|t| t.2.iter().copied()).collect(),
            x: vec![false; k * n],
            got: vec![0; k],
            base: vec![0; n],
            plus: vec![false; n],
            plus_used: 0,
            floor: total / n as u32,
            rem: total % n as u32,
        };
        // Successive shortest paths in phases (primal-dual): each phase computes shortest
        // distances once and then pushes as many units as it finds along paths whose every
        // edge is tight for those distances. Cheap shortcuts first:
        // 1. greedy cost-0 edges (a min-cost flow of its value: no edge costs less);
        // 2. once no cost-0 path is left, every path costs at least 1 (path costs never
        //    decrease), so direct cost-1 paths source -> topic -> broker -> sink are shortest:
        //    take those greedily before searching again.
        f.greedy(true);
        let mut direct_done = false;
        let mut flow: u32 = f.got.iter().sum();
        while flow < total {
            let dist = f.distances();
            let to_sink = dist[f.k + f.n + 2];
            if to_sink == i64::MAX {
                // Unreachable: a full flow always exists (see the module documentation).
                debug_assert!(false, "extras flow is infeasible");
                break;
            }
            if to_sink >= 1 && !direct_done {
                direct_done = true;
                f.greedy(false);
            } else {
                f.push_tight(&dist);
            }
            flow = f.got.iter().sum();
        }
        f
    }

    /// Takes one unit of broker capacity, if any is left.
    fn take(&mut self, b: usize) -> bool {
        if self.base[b] < self.floor {
            self.base[b] += 1;
            true
        } else if !self.plus[b] && self.plus_used < self.rem {
            self.plus[b] = true;
            self.plus_used += 1;
            true
        } else {
            false
        }
    }

    /// Direct assignments over edges of the given kind (preferred or not), least loaded
    /// broker first.
    fn greedy(&mut self, preferred: bool) {
        for t in 0..self.k {
            if self.got[t] == self.need[t] {
                continue;
            }
            let mut brokers: Vec<usize> = (0..self.n)
                .filter(|&b| self.preferred[t * self.n + b] == preferred && !self.x[t * self.n + b])
                .collect();
            brokers.sort_by_key(|&b| (self.base[b] + self.plus[b] as u32, b));
            for b in brokers {
                if self.got[t] == self.need[t] {
                    break;
                }
                if self.take(b) {
                    self.x[t * self.n + b] = true;
                    self.got[t] += 1;
                }
            }
        }
    }

    fn cost(&self, t: usize, b: usize) -> i64 {
        if self.preferred[t * self.n + b] { 0 } else { 1 }
    }

    /// Calls `f(v, cost)` for every residual edge out of node `u`. Nodes: 0 source, `1..=k`
    /// topics, then brokers, then X, then sink.
    fn edges(&self, u: usize, mut f: impl FnMut(usize, i64)) {
        let (n, k) = (self.n, self.k);
        let xnode = 1 + k + n;
        let sink = xnode + 1;
        if u == 0 {
            for t in 0..k {
                if self.got[t] < self.need[t] {
                    f(1 + t, 0);
                }
            }
        } else if u <= k {
            let t = u - 1;
            for b in 0..n {
                if !self.x[t * n + b] {
                    f(1 + k + b, self.cost(t, b));
                }
            }
        } else if u < xnode {
            let b = u - 1 - k;
            for t in 0..k {
                if self.x[t * n + b] {
                    f(1 + t, -self.cost(t, b));
                }
            }
            if self.base[b] < self.floor {
                f(sink, 0);
            }
            if !self.plus[b] {
                f(xnode, 0);
            }
        } else if u == xnode {
            if self.plus_used < self.rem {
                f(sink, 0);
            }
            for b in 0..n {
                if self.plus[b] {
                    f(1 + k + b, 0);
                }
            }
        }
    }

    /// Shortest distances from the source over the residual graph (Bellman-Ford with a
    /// queue: edges cost -1, 0 or 1, and the residual graph of a min-cost flow has no negative
    /// cycle). `i64::MAX` marks unreachable nodes.
    fn distances(&self) -> Vec<i64> {
        let nodes = self.k + self.n + 3;
        let mut dist = vec![i64::MAX; nodes];
        let mut queued = vec![false; nodes];
        let mut queue = std::collections::VecDeque::from([0usize]);
        dist[0] = 0;
        while let Some(u) = queue.pop_front() {
            queued[u] = false;
            let du = dist[u];
            self.edges(u, |v, c| {
                if du + c < dist[v] {
                    dist[v] = du + c;
                    if !queued[v] {
                        queued[v] = true;
                        queue.push_back(v);
                    }
                }
            });
        }
        dist
    }

    /// Pushes units along source-sink paths whose edges are all tight (`dist[v] == dist[u] +
    /// cost`); such paths are shortest, so the flow stays min-cost. Like Dinic's algorithm,
    /// only edges that also go one hop further from the source are used, which makes the
    /// searched graph acyclic, so a node that led nowhere can be dropped for the whole phase.
    fn push_tight(&mut self, dist: &[i64]) {
        let nodes = dist.len();
        let sink = nodes - 1;
        let tight = |f: &Extras, u: usize, out: &mut Vec<usize>| {
            if dist[u] != i64::MAX {
                f.edges(u, |v, c| {
                    if dist[v] != i64::MAX && dist[v] == dist[u] + c {
                        out.push(v);
                    }
                });
            }
        };
        let mut hops = vec![usize::MAX; nodes];
        hops[0] = 0;
        let mut queue = std::collections::VecDeque::from([0usize]);
        let mut next = Vec::new();
        while let Some(u) = queue.pop_front() {
            next.clear();
            tight(self, u, &mut next);
            for &v in &next {
                if hops[v] == usize::MAX {
                    hops[v] = hops[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        let mut adj: Vec<Option<Vec<usize>>> = vec![None; nodes];
        let mut at = vec![0usize; nodes];
        let mut dead = vec![false; nodes];
        let mut stack = vec![0usize];
        while let Some(&u) = stack.last() {
            if u == sink {
                for w in stack.windows(2) {
                    self.apply(w[0], w[1]);
                }
                stack.truncate(1);
                continue;
            }
            let list = adj[u].get_or_insert_with(|| {
                let mut out = Vec::new();
                tight(self, u, &mut out);
                out.retain(|&v| hops[v] == hops[u] + 1);
                out
            });
            while at[u] < list.len() && (dead[list[at[u]]] || !self.residual(u, list[at[u]])) {
                at[u] += 1;
            }
            if let Some(&v) = list.get(at[u]) {
                stack.push(v);
            } else {
                dead[u] = true;
                stack.pop();
            }
        }
    }

    /// Whether the edge `u -> v` (one that `edges` listed) still has residual capacity.
    fn residual(&self, u: usize, v: usize) -> bool {
        let (n, k) = (self.n, self.k);
        let xnode = 1 + k + n;
        let sink = xnode + 1;
        if u == 0 {
            self.got[v - 1] < self.need[v - 1]
        } else if u <= k {
            !self.x[(u - 1) * n + (v - 1 - k)]
        } else if u < xnode && v <= k {
            self.x[(v - 1) * n + (u - 1 - k)]
        } else if u < xnode && v == sink {
            self.base[u - 1 - k] < self.floor
        } else if u < xnode {
            !self.plus[u - 1 - k]
        } else if v == sink {
            self.plus_used < self.rem
        } else {
            self.plus[v - 1 - k]
        }
    }

    /// Pushes one unit over the residual edge `u -> v`.
    fn apply(&mut self, u: usize, v: usize) {
        let (n, k) = (self.n, self.k);
        let xnode = 1 + k + n;
        let sink = xnode + 1;
        if u == 0 {
            self.got[v - 1] += 1;
        } else if u <= k {
            self.x[(u - 1) * n + (v - 1 - k)] = true;
        } else if u < xnode && v <= k {
            self.x[(v - 1) * n + (u - 1 - k)] = false;
        } else if u < xnode && v == sink {
            self.base[u - 1 - k] += 1;
        } else if u < xnode {
            self.plus[u - 1 - k] = true;
        } else if v == sink {
            self.plus_used += 1;
        } else {
            self.plus[v - 1 - k] = false;
        }
    }
}
