//! Reading the server's side of the plan: the deployments and flows the yaml names (or all of
//! them, to prune), the automations of deployments with triggers, and the work pools, limits and
//! variables the yaml declares (`resources_apply::read`), in a few bulk reads.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::prefect::api::{encode_segment, PrefectClient};
use crate::sync::desired::DesiredState;
use crate::sync::plan::ServerState;

/// The server state the plan needs, in a few bulk reads (never one GET per deployment).
pub(crate) fn read_server_state(
    client: &PrefectClient,
    desired: &DesiredState,
    prune: bool,
) -> Result<ServerState> {
    let flow_names: Vec<&str> = {
        let mut names: Vec<&str> = desired
            .deployments
            .iter()
            .map(|d| d.flow_name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let deployment_names: Vec<&str> = desired
        .deployments
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let filter = if prune {
        // Prune candidates can have any name: read them all (labels cannot be filtered on).
        json!({})
    } else {
        json!({"flows": {"name": {"any_": flow_names}}, "deployments": {"name": {"any_": deployment_names}}})
    };
    let deployments = if !prune && deployment_names.is_empty() {
        Vec::new()
    } else {
        client
            .read_deployments(filter)
            .context("cannot read the server's deployments")?
    };
    let mut flow_ids: Vec<&str> = deployments
        .iter()
        .filter_map(|d| d.get("flow_id").and_then(Value::as_str))
        .collect();
    flow_ids.sort_unstable();
    flow_ids.dedup();
    let flows = if flow_ids.is_empty() {
        Vec::new()
    } else {
        client
            .read_flows(json!({"flows": {"id": {"any_": flow_ids}}}))
            .context("cannot read the server's flows")?
    };
    let automations = if desired.deployments.iter().any(|d| d.triggers.is_some()) {
        Some(read_related_automations(
            client,
            desired,
            &deployments,
            &flows,
        )?)
    } else {
        None
    };
    let mut state = ServerState::from_json(deployments, &flows, automations)?;
    let limits_used = desired
        .deployments
        .iter()
        .any(|d| d.fields.contains_key("global_concurrency_limit"));
    state.resources = crate::sync::resources_apply::read(
        client,
        &desired.resources,
        &desired.owner,
        prune,
        &state.deployments,
        limits_used,
    )?;
    Ok(state)
}

/// The automations related to each existing deployment whose yaml states `triggers` (one GET
/// each: the API has no bulk read that says which deployment owns an automation).
fn read_related_automations(
    client: &PrefectClient,
    desired: &DesiredState,
    deployments: &[Value],
    flows: &[Value],
) -> Result<HashMap<String, Vec<Value>>> {
    let flow_ids: HashMap<&str, &str> = flows
        .iter()
        .filter_map(|f| Some((f.get("name")?.as_str()?, f.get("id")?.as_str()?)))
        .collect();
    let mut out = HashMap::new();
    for want in desired.deployments.iter().filter(|d| d.triggers.is_some()) {
        let Some(flow_id) = flow_ids.get(want.flow_name.as_str()) else {
            continue;
        };
        let found = deployments.iter().find(|d| {
            d.get("name").and_then(Value::as_str) == Some(want.name.as_str())
                && d.get("flow_id").and_then(Value::as_str) == Some(flow_id)
        });
        let Some(id) = found.and_then(|d| d.get("id")).and_then(Value::as_str) else {
            continue;
        };
        let related = client
            .get(&format!(
                "/automations/related-to/prefect.deployment.{}",
                encode_segment(id)
            ))
            .with_context(|| format!("cannot read the automations of {}", want.full_name()))?;
        let list = match related {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        out.insert(id.to_string(), list);
    }
    Ok(out)
}
