//! Preferred-leader balancing by reordering replicas (free: no data moves).
//!
//! Choosing a leader per partition among its replicas, with every broker's leader count in
//! `[floor, ceil]` of `P / n` per topic and overall, is a flow problem (partition -> (topic,
//! broker) -> broker -> sink, with lower and upper bounds). Starting from the current leaders,
//! each step shifts leadership along an augmenting path (partition `p1` passes from `a` to `x1`,
//! `p2` from `x1` to `x2`, ...), which moves one leadership from an over-full broker to an
//! under-full one and leaves every intermediate broker's count unchanged. When no path exists
//! the bounds cannot be met (augmenting paths are complete for flows), so the result is balanced
//! whenever a balanced leader choice exists, and leaders change only along the paths used.
//!
//! First every topic is balanced on its own (paths inside the topic), then the cluster totals
//! (paths may switch topics at a broker if both topics' counts stay within their bounds there).

use super::model::Model;

pub(crate) fn balance(model: &mut Model) {
    if model.n <= 1 || model.parts.is_empty() {
        return;
    }
    let mut state = Leaders::new(model);
    for t in 0..model.topics.len() {
        state.balance_topic(model, t);
    }
    state.balance_total(model);
}

struct Leaders {
    n: usize,
    /// Leader counts per (topic, broker) and per broker.
    topic: Vec<u32>,
    total: Vec<u32>,
    floor: Vec<u32>,
    ceil: Vec<u32>,
    /// Parts led by each broker, sorted (so grouped by topic).
    led: Vec<Vec<usize>>,
}

const NONE: u32 = u32::MAX;

impl Leaders {
    fn new(model: &Model) -> Leaders {
        let n = model.n;
        let topics = model.topics.len();
        let mut s = Leaders {
            n,
            topic: vec![0; topics * n],
            total: vec![0; n],
            floor: Vec::with_capacity(topics),
            ceil: Vec::with_capacity(topics),
            led: vec![Vec::new(); n],
        };
        for r in &model.topic_parts {
            s.floor.push((r.len() / n) as u32);
            s.ceil.push(r.len().div_ceil(n) as u32);
        }
        for (i, p) in model.parts.iter().enumerate() {
            let l = p.replicas[0] as usize;
            s.topic[p.topic as usize * n + l] += 1;
            s.total[l] += 1;
            s.led[l].push(i);
        }
        s
    }

    fn at(&self, t: usize, b: usize) -> u32 {
        self.topic[t * self.n + b]
    }

    /// Parts of topic `t` led by `b`.
    fn led_in<'a>(&'a self, model: &Model, b: usize, t: usize) -> &'a [usize] {
        let r = &model.topic_parts[t];
        let list = &self.led[b];
        let lo = list.partition_point(|&i| i < r.start);
        let hi = list.partition_point(|&i| i < r.end);
        &list[lo..hi]
    }

    /// Makes `to` the preferred leader of part `i` (moving it to the front, keeping the order
    /// of the others). The searches only hand a partition over to one of its replicas; were
    /// that ever not so, the hand-over is skipped: reordering never moves data, so a skipped
    /// one costs some leader balance and nothing else.
    fn hand_over(&mut self, model: &mut Model, i: usize, to: u32) {
        let p = &mut model.parts[i];
        let (Some(&first), Some(pos)) =
            (p.replicas.first(), p.replicas.iter().position(|&b| b == to))
        else {
            return;
        };
        let from = first as usize;
        let Ok(k) = self.led[from].binary_search(&i) else {
            return;
        };
        p.replicas[..=pos].rotate_right(1);
        let t = p.topic as usize;
        self.topic[t * self.n + from] -= 1;
        self.total[from] -= 1;
        self.topic[t * self.n + to as usize] += 1;
        self.total[to as usize] += 1;
        self.led[from].remove(k);
        let k = self.led[to as usize]
            .binary_search(&i)
            .unwrap_or_else(|k| k);
        self.led[to as usize].insert(k, i);
    }

    /// Balances the leaders of topic `t` within `[floor, ceil]`, first relieving brokers above
    /// the ceiling, then filling brokers below the floor.
    fn balance_topic(&mut self, model: &mut Model, t: usize) {
        let n = self.n;
        let (floor, ceil) = (self.floor[t], self.ceil[t]);
        let range = model.topic_parts[t].clone();
        let mut stuck = vec![false; n];
        // Relieve: a forward search from an over-full broker over "x leads p, y is a replica of
        // p" finds the nearest broker below the ceiling; among equally near ones the broker with
        // the fewest leaders overall, which helps the cluster-wide pass.
        while let Some(a) = (0..n).find(|&b| !stuck[b] && self.at(t, b) > ceil) {
            let mut parent = vec![(usize::MAX, usize::MAX); n];
            let mut seen = vec![false; n];
            seen[a] = true;
            let mut level = vec![a];
            let mut found = None;
            while !level.is_empty() && found.is_none() {
                let mut next = Vec::new();
                for &x in &level {
                    for &i in self.led_in(model, x, t) {
                        for &y in &model.parts[i].replicas {
                            let y = y as usize;
                            if !seen[y] {
                                seen[y] = true;
                                parent[y] = (i, x);
                                next.push(y);
                            }
                        }
                    }
                }
                found = next
                    .iter()
                    .copied()
                    .filter(|&y| self.at(t, y) < ceil)
                    .min_by_key(|&y| (self.total[y], y));
                level = next;
            }
            match found {
                Some(mut y) => {
                    while y != a {
                        let (i, x) = parent[y];
                        self.hand_over(model, i, y as u32);
                        y = x;
                    }
                }
                None => stuck[a] = true,
            }
        }
        // Fill: a backward search from an under-full broker over "y is a replica of p, x leads
        // p" finds the nearest broker above the floor to take a leadership from.
        let mut holding = vec![Vec::new(); n];
        for i in range {
            for &y in &model.parts[i].replicas {
                holding[y as usize].push(i);
            }
        }
        let mut stuck = vec![false; n];
        while let Some(b) = (0..n).find(|&y| !stuck[y] && self.at(t, y) < floor) {
            let mut child = vec![(usize::MAX, usize::MAX); n];
            let mut seen = vec![false; n];
            seen[b] = true;
            let mut level = vec![b];
            let mut found = None;
            while !level.is_empty() && found.is_none() {
                let mut next = Vec::new();
                for &y in &level {
                    for &i in &holding[y] {
                        let x = model.parts[i].replicas[0] as usize;
                        if !seen[x] {
                            seen[x] = true;
                            child[x] = (i, y);
                            next.push(x);
                        }
                    }
                }
                found = next
                    .iter()
                    .copied()
                    .filter(|&x| self.at(t, x) > floor)
                    .max_by_key(|&x| (self.total[x], std::cmp::Reverse(x)));
                level = next;
            }
            match found {
                Some(mut x) => {
                    while x != b {
                        let (i, y) = child[x];
                        self.hand_over(model, i, y as u32);
                        x = y;
                    }
                }
                None => stuck[b] = true,
            }
        }
    }

    /// The one-hop part of the cluster-wide balancing, without searching: passes leadership of
    /// a partition to another of its replicas whose broker leads at least two fewer partitions
    /// overall, when both brokers stay within the topic's bounds. Each shift lowers the sum of
    /// squared counts, and a pass over all partitions is linear, so the searches that follow
    /// only handle what needs longer paths (many single-partition topics would otherwise need
    /// one search per leadership).
    fn direct_shifts(&mut self, model: &mut Model) {
        loop {
            let mut changed = false;
            for i in 0..model.parts.len() {
                let a = model.parts[i].replicas[0] as usize;
                let t = model.parts[i].topic as usize;
                if self.at(t, a) <= self.floor[t] {
                    continue;
                }
                let best = model.parts[i].replicas[1..]
                    .iter()
                    .map(|&y| y as usize)
                    .filter(|&y| self.at(t, y) < self.ceil[t])
                    .min_by_key(|&y| (self.total[y], y));
                if let Some(y) = best
                    && self.total[a] >= self.total[y] + 2
                {
                    self.hand_over(model, i, y as u32);
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Balances the cluster-wide leader counts within `[floor, ceil]` of `P / n`, keeping every
    /// topic's counts within their bounds. Search states are (broker, topic it gains a
    /// leadership in); a broker may pass on a leadership of another topic only if it can take
    /// one more of the topic it gained and give one of the other.
    fn balance_total(&mut self, model: &mut Model) {
        let n = self.n;
        let parts = model.parts.len();
        let (floor, ceil) = ((parts / n) as u32, parts.div_ceil(n) as u32);
        let topics = model.topics.len();
        self.direct_shifts(model);
        let mut seen = vec![0u32; n * (topics + 1)];
        let mut stamp = 0u32;
        loop {
            let over: Vec<usize> = (0..n).filter(|&b| self.total[b] > ceil).collect();
            let (sources, limit): (Vec<usize>, u32) = if !over.is_empty() {
                (over, ceil)
            } else if (0..n).any(|b| self.total[b] < floor) {
                ((0..n).filter(|&b| self.total[b] > floor).collect(), floor)
            } else {
                return;
            };
            stamp += 1;
            let state =
                |b: usize, t: u32| b * (topics + 1) + if t == NONE { topics } else { t as usize };
            // Queue entries: (broker, topic gained, part handed over, parent entry).
            let mut queue: Vec<(usize, u32, usize, usize)> = Vec::new();
            for &a in &sources {
                seen[state(a, NONE)] = stamp;
                queue.push((a, NONE, usize::MAX, usize::MAX));
            }
            let mut crossed = vec![false; n];
            let mut head = 0;
            let mut found = None;
            'search: while head < queue.len() {
                let (x, tin, _, _) = queue[head];
                let mut next: Vec<(usize, u32)> = Vec::new();
                if tin != NONE {
                    for &i in self.led_in(model, x, tin as usize) {
                        next.push((i, tin));
                    }
                }
                let may_cross = tin == NONE || self.at(tin as usize, x) < self.ceil[tin as usize];
                if may_cross && !crossed[x] {
                    // Through the broker itself into another topic's (topic, broker) node;
                    // each such node is entered once, so paths stay simple.
                    crossed[x] = true;
                    // `led[x]` is grouped by topic: decide once per group.
                    let mut group = (NONE, false);
                    for &i in &self.led[x] {
                        let u = model.parts[i].topic;
                        if group.0 != u {
                            let s = state(x, u);
                            let open = u != tin
                                && seen[s] != stamp
                                && self.at(u as usize, x) > self.floor[u as usize];
                            if open {
                                seen[s] = stamp;
                            }
                            group = (u, open);
                        }
                        if group.1 {
                            next.push((i, u));
                        }
                    }
                }
                for (i, u) in next {
                    for &y in &model.parts[i].replicas {
                        let y = y as usize;
                        if y == x || seen[state(y, u)] == stamp {
                            continue;
                        }
                        seen[state(y, u)] = stamp;
                        queue.push((y, u, i, head));
                        if self.total[y] < limit && self.at(u as usize, y) < self.ceil[u as usize] {
                            found = Some(queue.len() - 1);
                            break 'search;
                        }
                    }
                }
                head += 1;
            }
            let Some(mut e) = found else { return };
            while queue[e].3 != usize::MAX {
                let (y, _, i, parent) = queue[e];
                self.hand_over(model, i, y as u32);
                e = parent;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Broker, PartitionAssignment, PlanRequest};
    use super::*;

    #[test]
    fn rotates_leadership_without_moving_replicas() {
        // Broker 0 leads everything; every partition has all three brokers.
        let current: Vec<PartitionAssignment> = (0..6)
            .map(|p| PartitionAssignment {
                topic: "t".into(),
                partition: p,
                replicas: vec![0, 1, 2],
            })
            .collect();
        let req = PlanRequest {
            current: current.clone(),
            brokers: (0..3).map(Broker::new).collect(),
            ..Default::default()
        };
        let mut model = Model::build(&req).unwrap();
        balance(&mut model);
        let target = model.target();
        let mut leaders = [0; 3];
        for (c, t) in current.iter().zip(&target) {
            let mut a = c.replicas.clone();
            let mut b = t.replicas.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            leaders[t.replicas[0] as usize] += 1;
        }
        assert_eq!(leaders, [2, 2, 2]);
    }

    #[test]
    fn a_hand_over_to_a_broker_that_is_no_replica_changes_nothing() {
        let req = PlanRequest {
            current: vec![PartitionAssignment {
                topic: "t".into(),
                partition: 0,
                replicas: vec![0, 1],
            }],
            brokers: (0..3).map(Broker::new).collect(),
            ..Default::default()
        };
        let mut model = Model::build(&req).unwrap();
        let mut counts = Leaders::new(&model);
        counts.hand_over(&mut model, 0, 2);
        assert_eq!(model.parts[0].replicas, vec![0, 1]);
        counts.hand_over(&mut model, 0, 1);
        assert_eq!(model.parts[0].replicas, vec![1, 0]);
    }
}
