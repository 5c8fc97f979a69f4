//! Shared helpers of the integration tests. Each test binary uses only part of them.
#![allow(dead_code)]

pub mod kube;
