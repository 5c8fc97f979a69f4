//! Server-side apply of the built objects under one field manager.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::names::FIELD_MANAGER;

use super::error::{Error, Result};

/// Applies `object` with server-side apply and returns what the API server stored. Forced:
/// the operator owns these objects' fields; a hand edit of one is undone, as users expect of
/// an operator.
pub async fn apply<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let mut value = serde_json::to_value(object).map_err(|source| Error::Serialize {
        what: format!("{} {}", K::kind(&()), object.name_any()),
        source,
    })?;
    // Server-side apply needs apiVersion and kind in the body.
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Apply(&value))
        .await?)
}
