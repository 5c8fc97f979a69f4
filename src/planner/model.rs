//! The request validated and turned into dense indexes, so the algorithms work on arrays
//! (counts indexed by broker position) instead of maps.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::{PartitionAssignment, PlanError, PlanRequest};

/// A replica slot that a replication-factor increase added and that is not placed yet.
pub(crate) const UNPLACED: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub topic: u32,
    pub partition: i32,
    /// Broker indexes in order (first = preferred leader); may hold leaving brokers or
    /// [`UNPLACED`] until the placement has run.
    pub replicas: Vec<u32>,
    /// Replication factor after the plan.
    pub rf: usize,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Model {
    /// Number of target brokers; broker indexes `0..n` are the target set sorted by id,
    /// `n..` the leaving brokers sorted by id.
    pub n: usize,
    pub ids: Vec<i32>,
    /// Rack index of each broker, if known.
    pub rack: Vec<Option<u32>>,
    /// Distinct racks among target brokers (0 when racks are not used).
    pub rack_count: usize,
    pub topics: Vec<String>,
    /// Parts are sorted by (topic, partition); the parts of topic `t` are `topic_parts[t]`.
    pub topic_parts: Vec<Range<usize>>,
    pub parts: Vec<Part>,
    /// For each partition of the request, in request order, its index in `parts`.
    pub input_order: Vec<usize>,
    pub leaving: Vec<i32>,
    pub arriving: Vec<i32>,
}

impl Model {
    pub fn build(req: &PlanRequest) -> Result<Model, PlanError> {
        if req.brokers.is_empty() {
            return Err(PlanError::NoBrokers);
        }
        let mut target_ids = BTreeSet::new();
        for b in &req.brokers {
            if b.id < 0 {
                return Err(PlanError::InvalidBrokerId(b.id));
            }
            if !target_ids.insert(b.id) {
                return Err(PlanError::DuplicateBroker(b.id));
            }
        }
        // Kafka's own placer also insists on all-or-nothing racks: a partial rack map would
        // make "spread over racks" meaningless for the brokers without one.
        if req.brokers.iter().any(|b| b.rack.is_some())
            && let Some(b) = req
                .brokers
                .iter()
                .filter(|b| b.rack.is_none())
                .min_by_key(|b| b.id)
        {
            return Err(PlanError::MissingRack(b.id));
        }

        let mut seen = BTreeSet::new();
        let mut current_ids = BTreeSet::new();
        for p in &req.current {
            if !seen.insert((p.topic.as_str(), p.partition)) {
                return Err(PlanError::DuplicatePartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                });
            }
            if p.replicas.is_empty() {
                return Err(PlanError::NoReplicas {
                    topic: p.topic.clone(),
                    partition: p.partition,
                });
            }
            let mut in_partition = BTreeSet::new();
            for &r in &p.replicas {
                if r < 0 {
                    return Err(PlanError::InvalidBrokerId(r));
                }
                if !in_partition.insert(r) {
                    return Err(PlanError::DuplicateReplica {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        broker: r,
                    });
                }
                current_ids.insert(r);
            }
        }

        let n = target_ids.len();
        let topics: Vec<String> = req
            .current
            .iter()
            .map(|p| p.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (topic, &rf) in &req.replication_factors {
            if topics.binary_search(topic).is_err() {
                return Err(PlanError::UnknownTopic(topic.clone()));
            }
            if rf < 1 {
                return Err(PlanError::RequestedFactorBelowOne {
                    topic: topic.clone(),
                    replication_factor: rf,
                });
            }
            if rf > n {
                return Err(PlanError::RequestedFactorAboveBrokers {
                    topic: topic.clone(),
                    replication_factor: rf,
                    brokers: n,
                });
            }
        }
        let mut max_rf: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &req.current {
            let e = max_rf.entry(p.topic.as_str()).or_default();
            *e = (*e).max(p.replicas.len());
        }
        for (topic, &rf) in &max_rf {
            if !req.replication_factors.contains_key(*topic) && rf > n {
                return Err(PlanError::ReplicationFactorAboveBrokers {
                    topic: topic.to_string(),
                    replication_factor: rf,
                    brokers: n,
                });
            }
        }

        let leaving: Vec<i32> = current_ids.difference(&target_ids).copied().collect();
        let arriving: Vec<i32> = target_ids.difference(&current_ids).copied().collect();
        let ids: Vec<i32> = target_ids.iter().chain(&leaving).copied().collect();
        let index: BTreeMap<i32, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();

        // Racks become dense indexes in name order; leaving brokers' racks are optional.
        let mut rack_name: BTreeMap<i32, &str> = BTreeMap::new();
        for b in &req.brokers {
            if let Some(r) = &b.rack {
                rack_name.insert(b.id, r);
            }
        }
        for (id, r) in &req.leaving_racks {
            if !target_ids.contains(id) {
                rack_name.insert(*id, r);
            }
        }
        let rack_ids: BTreeMap<&str, u32> = rack_name
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r, i as u32))
            .collect();
        let rack: Vec<Option<u32>> = ids
            .iter()
            .map(|id| rack_name.get(id).map(|r| rack_ids[r]))
            .collect();
        let rack_count = rack[..n].iter().flatten().collect::<BTreeSet<_>>().len();

        let topic_index: BTreeMap<&str, u32> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let mut order: Vec<usize> = (0..req.current.len()).collect();
        order.sort_by_key(|&i| {
            (
                topic_index[req.current[i].topic.as_str()],
                req.current[i].partition,
            )
        });
        let mut input_order = vec![0; req.current.len()];
        let mut parts = Vec::with_capacity(order.len());
        for (pos, &i) in order.iter().enumerate() {
            input_order[i] = pos;
            let p = &req.current[i];
            let replicas: Vec<u32> = p.replicas.iter().map(|r| index[r]).collect();
            let rf = req
                .replication_factors
                .get(&p.topic)
                .copied()
                .unwrap_or(replicas.len());
            parts.push(Part {
                topic: topic_index[p.topic.as_str()],
                partition: p.partition,
                replicas,
                rf,
                size: req
                    .sizes
                    .get(&(p.topic.clone(), p.partition))
                    .copied()
                    .unwrap_or(0),
            });
        }
        let mut topic_parts = Vec::with_capacity(topics.len());
        let mut start = 0;
        for t in 0..topics.len() as u32 {
            let end = start + parts[start..].iter().take_while(|p| p.topic == t).count();
            topic_parts.push(start..end);
            start = end;
        }

        Ok(Model {
            n,
            ids,
            rack,
            rack_count,
            topics,
            topic_parts,
            parts,
            input_order,
            leaving,
            arriving,
        })
    }

    /// Whether a broker index is in the target set.
    pub fn is_target(&self, b: u32) -> bool {
        (b as usize) < self.n
    }

    /// The target assignment, in request order.
    pub fn target(&self) -> Vec<PartitionAssignment> {
        self.input_order
            .iter()
            .map(|&i| {
                let p = &self.parts[i];
                PartitionAssignment {
                    topic: self.topics[p.topic as usize].clone(),
                    partition: p.partition,
                    replicas: p.replicas.iter().map(|&b| self.ids[b as usize]).collect(),
                }
            })
            .collect()
    }
}
