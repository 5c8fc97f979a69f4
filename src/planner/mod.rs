//! Partition reassignment planning.
