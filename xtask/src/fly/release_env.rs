//! The release Machine's plain environment as this host can know it, so that a plan or drift
//! check made here describes what the release command registers there.

use std::collections::BTreeMap;

use crate::fly::secrets;
use crate::sys::env_vars::EnvVars;
use crate::sys::redact::SECRET_ENV_VARS;

/// This host's environment overlaid with fly.toml `[env]`, except connection settings.
pub fn release_env(host: &EnvVars, fly_env: &BTreeMap<String, String>) -> EnvVars {
    let mut env = host.clone();
    for (name, value) in fly_env.iter().filter(|(name, _)| !keeps_host_value(name)) {
        env.set(name, value);
    }
    env
}

/// Connection settings stay this host's: the release Machine's own PREFECT_API_URL may be an
/// internal address (and credentials come from secrets, which are not in fly.toml anyway).
fn keeps_host_value(name: &str) -> bool {
    name == secrets::PREFECT_API_URL || SECRET_ENV_VARS.contains(&name) || name.starts_with("FLY_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fly_toml_env_overlays_all_but_connection_settings() {
        let host: EnvVars = [
            ("PREFECT_API_URL", "https://host/api"),
            ("APP_DIR", "/here"),
            ("HOME", "/home/me"),
        ]
        .into_iter()
        .collect();
        let fly_env = BTreeMap::from([
            ("APP_DIR".to_string(), "/app".to_string()),
            (
                "PREFECT_API_URL".to_string(),
                "https://internal/api".to_string(),
            ),
            ("FLY_PROCESS_GROUP".to_string(), "app".to_string()),
            ("PREFECT_CLIENT_MAX_RETRIES".to_string(), "2".to_string()),
        ]);
        let env = release_env(&host, &fly_env);
        assert_eq!(env.get("APP_DIR"), Some("/app"));
        assert_eq!(env.get("HOME"), Some("/home/me"));
        assert_eq!(env.get("PREFECT_API_URL"), Some("https://host/api"));
        assert_eq!(env.get("FLY_PROCESS_GROUP"), None);
        assert_eq!(env.get("PREFECT_CLIENT_MAX_RETRIES"), Some("2"));
    }

    #[test]
    fn release_env_keeps_connection_settings() {
        assert!(keeps_host_value("PREFECT_API_URL"));
        assert!(keeps_host_value("PREFECT_API_KEY"));
        assert!(keeps_host_value("FLY_API_TOKEN"));
        assert!(!keeps_host_value("APP_DIR"));
    }
}
